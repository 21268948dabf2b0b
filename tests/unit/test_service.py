"""The service layer's rules, over fakes of its ports."""

from __future__ import annotations

from consumer.domain import EventIdentity, Position, Rejection, StartCommand
from consumer.service import start_tasks
from tests.fakes import FakeStore, FakeUnitOfWork


def command(event_id: str, service_id: int = 21456878, **attached: object) -> StartCommand:
    return StartCommand(
        identity=EventIdentity("test", event_id),
        service_id=service_id,
        fields={"state_id": 24},
        attached_data=dict(attached),
        position=Position("requests", 0, 0),
    )


def factory(store: FakeStore):  # type: ignore[no-untyped-def]
    return lambda: FakeUnitOfWork(store)


async def test_new_events_get_increasing_ids_in_batch_order() -> None:
    store = FakeStore()
    outcome = await start_tasks([command("a"), command("b")], [], factory(store))
    ids = [outcome.tasks[EventIdentity("test", x)].task_id for x in "ab"]
    assert ids == [1, 2]
    assert outcome.created == {EventIdentity("test", "a"), EventIdentity("test", "b")}


async def test_a_known_identity_gets_its_task_again_and_takes_no_id() -> None:
    store = FakeStore()
    await start_tasks([command("a")], [], factory(store))
    outcome = await start_tasks([command("a")], [], factory(store))
    assert outcome.tasks[EventIdentity("test", "a")].task_id == 1
    assert not outcome.created
    assert store.next_id == 2


async def test_duplicates_within_one_batch_share_one_task() -> None:
    store = FakeStore()
    outcome = await start_tasks([command("a"), command("a"), command("b")], [], factory(store))
    assert len(store.tasks) == 2
    assert outcome.tasks[EventIdentity("test", "b")].task_id == 2


async def test_rejections_are_recorded_in_the_same_commit() -> None:
    store = FakeStore()
    rejection = Rejection(
        EventIdentity("test", "bad"), None, 400, "invalid_field", {}, Position("r", 0, 1)
    )
    outcome = await start_tasks([command("a")], [rejection], factory(store))
    assert store.commits == 1
    assert EventIdentity("test", "bad") in store.rejections
    assert outcome.rejections[EventIdentity("test", "bad")] is rejection


async def test_an_exhausted_id_space_rejects_new_events_but_answers_known_ones() -> None:
    store = FakeStore(next_id=2**31 - 1)
    await start_tasks([command("last")], [], factory(store))
    outcome = await start_tasks([command("last"), command("one-too-many")], [], factory(store))
    assert outcome.tasks[EventIdentity("test", "last")].task_id == 2**31 - 1
    refused = outcome.rejections[EventIdentity("test", "one-too-many")]
    assert refused.code == "id_space_exhausted"
    assert "exhausted" in refused.body["message"]


async def test_an_unstorable_event_is_rejected_alone_and_the_rest_are_stored() -> None:
    store = FakeStore()
    store.unstorable.add(EventIdentity("test", "poison"))
    outcome = await start_tasks([command("a"), command("poison"), command("b")], [], factory(store))
    assert set(store.tasks) == {EventIdentity("test", "a"), EventIdentity("test", "b")}
    assert outcome.rejections[EventIdentity("test", "poison")].status == 400
    assert EventIdentity("test", "poison") in store.rejections
