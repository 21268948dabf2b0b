"""The service layer's rules, over fakes of its ports: one outcome per command, in order."""

from __future__ import annotations

from datetime import UTC, datetime

from consumer.domain import (
    Changed,
    ChangeKind,
    EndCommand,
    EventIdentity,
    ExtensionCommand,
    Position,
    Rejection,
    StartCommand,
    Task,
    Undecodable,
)
from consumer.ports import UnitOfWorkFactory
from consumer.service import handle
from tests.fakes import FakeStore, FakeUnitOfWork


def command(event_id: str, service_id: int = 21456878, **attached: object) -> StartCommand:
    return StartCommand(
        identity=EventIdentity("test", event_id),
        service_id=service_id,
        fields={"state_id": 24},
        attached_data=dict(attached),
        position=Position("requests", 0, 0),
    )


def refusal(event_id: str, offset: int = 1) -> Rejection:
    return Rejection(
        EventIdentity("test", event_id), 7, 400, "invalid_field", {}, Position("r", 0, offset)
    )


def factory(store: FakeStore) -> UnitOfWorkFactory:
    return lambda: FakeUnitOfWork(store)


def task_ids(outcomes: list[object]) -> list[int | None]:
    return [o.task_id if isinstance(o, Task) else None for o in outcomes]


async def test_new_events_get_increasing_ids_in_batch_order() -> None:
    outcomes = await handle([command("a"), command("b")], factory(FakeStore()))
    assert task_ids(list(outcomes)) == [1, 2]


async def test_a_known_identity_gets_its_task_again_and_takes_no_id() -> None:
    store = FakeStore()
    await handle([command("a")], factory(store))
    outcomes = await handle([command("a")], factory(store))
    assert task_ids(list(outcomes)) == [1]
    assert store.next_id == 2


async def test_duplicates_within_one_batch_share_one_task() -> None:
    store = FakeStore()
    outcomes = await handle([command("a"), command("a"), command("b")], factory(store))
    assert task_ids(list(outcomes)) == [1, 1, 2]
    assert len(store.tasks) == 2


async def test_every_command_gets_one_outcome_in_its_own_place() -> None:
    dead = Undecodable(Position("r", 0, 3), "no identity")
    refused = refusal("bad")
    outcomes = await handle([dead, command("a"), refused, command("b")], factory(FakeStore()))
    assert outcomes[0] is dead
    assert task_ids([outcomes[1], outcomes[3]]) == [1, 2]
    assert outcomes[2] is refused


async def test_a_batch_of_dead_letters_only_opens_no_transaction() -> None:
    store = FakeStore()
    dead = Undecodable(Position("r", 0, 3), "no identity")
    assert await handle([dead], factory(store)) == [dead]
    assert store.commits == 0


async def test_rejections_are_recorded_in_the_same_commit() -> None:
    store = FakeStore()
    refused = refusal("bad")
    outcomes = await handle([command("a"), refused], factory(store))
    assert store.commits == 1
    assert EventIdentity("test", "bad") in store.rejections
    assert outcomes[1] is refused


async def test_a_stored_identity_answers_its_task_whatever_invalid_body_it_comes_back_with() -> (
    None
):
    store = FakeStore()
    (created,) = await handle([command("same-1")], factory(store))
    (again,) = await handle([refusal("same-1")], factory(store))
    assert again == created
    assert EventIdentity("test", "same-1") not in store.rejections


async def test_an_invalid_body_beside_a_valid_one_with_the_same_identity_answers_its_task() -> None:
    store = FakeStore()
    outcomes = await handle([refusal("same-2"), command("same-2")], factory(store))
    assert task_ids(list(outcomes)) == [1, 1]
    assert not store.rejections


async def test_an_exhausted_id_space_rejects_new_events_but_answers_known_ones() -> None:
    store = FakeStore(next_id=2**31 - 1)
    await handle([command("last")], factory(store))
    outcomes = await handle([command("last"), command("one-too-many")], factory(store))
    assert task_ids([outcomes[0]]) == [2**31 - 1]
    refused = outcomes[1]
    assert isinstance(refused, Rejection)
    assert refused.code == "id_space_exhausted"
    assert "exhausted" in refused.body["message"]
    assert EventIdentity("test", "one-too-many") in store.rejections


async def test_an_unstorable_event_is_rejected_alone_and_the_rest_are_stored() -> None:
    store = FakeStore()
    store.unstorable.add(EventIdentity("test", "poison"))
    outcomes = await handle([command("a"), command("poison"), command("b")], factory(store))
    assert set(store.tasks) == {EventIdentity("test", "a"), EventIdentity("test", "b")}
    poison = outcomes[1]
    assert isinstance(poison, Rejection)
    assert poison.status == 400
    assert EventIdentity("test", "poison") in store.rejections


# --- the task lifecycle: ends and extension updates


def end(event_id: str, task_id: int, service_id: int = 21456878, **fields: object) -> EndCommand:
    return EndCommand(
        EventIdentity("test", event_id), service_id, task_id, dict(fields), {}, Position("r", 0, 9)
    )


def update(event_id: str, task_id: int, name: str, value: dict[str, object]) -> ExtensionCommand:
    return ExtensionCommand(
        EventIdentity("test", event_id), 21456878, task_id, name, value, Position("r", 0, 9)
    )


async def test_a_start_and_its_end_in_one_batch_apply_in_that_order() -> None:
    store = FakeStore()
    outcomes = await handle([command("s"), end("e", 1)], factory(store))
    assert isinstance(outcomes[0], Task)
    assert isinstance(outcomes[1], Changed)
    assert outcomes[1].change.kind is ChangeKind.END
    assert outcomes[1].task.completion is not None


async def test_a_replayed_end_answers_the_same_completion_and_a_new_one_is_a_409() -> None:
    store = FakeStore()
    await handle([command("s"), end("e", 1)], factory(store))
    again, other = await handle([end("e", 1), end("e2", 1)], factory(store))
    assert isinstance(again, Changed)
    assert again.change.identity == EventIdentity("test", "e")
    assert isinstance(other, Rejection)
    assert (other.status, other.code, other.task_id) == (409, "task_completed", 1)
    assert EventIdentity("test", "e2") in store.rejections


async def test_an_end_for_an_unknown_task_or_another_service_is_a_404_not_recorded() -> None:
    store = FakeStore()
    await handle([command("s")], factory(store))
    unknown, foreign = await handle([end("x", 99), end("y", 1, service_id=5)], factory(store))
    for refused in (unknown, foreign):
        assert isinstance(refused, Rejection)
        assert (refused.status, refused.code) == (404, "task_not_found")
        assert [e["field"] for e in refused.body["errors"]] == ["task_id"]
        assert "before its start" in refused.body["message"]
    assert not store.rejections, "it may come again once the task exists"


async def test_an_end_before_the_start_timestamp_is_a_400() -> None:
    store = FakeStore()
    await handle([command("s")], factory(store))
    early = datetime(2000, 1, 1, tzinfo=UTC)
    [refused] = await handle([end("e", 1, timestamp=early)], factory(store))
    assert isinstance(refused, Rejection)
    assert (refused.status, refused.code) == (400, "end_before_start")


async def test_an_extension_update_answers_the_value_and_an_unstorable_one_is_refused_alone() -> (
    None
):
    store = FakeStore()
    await handle([command("s")], factory(store))
    store.unstorable.add(EventIdentity("test", "bad"))
    good, bad = await handle(
        [update("u", 1, "Survey", {"q": 1}), update("bad", 1, "Other", {})], factory(store)
    )
    assert isinstance(good, Changed)
    assert (good.change.extension, good.change.value_json) == ("Survey", '{"q":1}')
    assert isinstance(bad, Rejection)
    assert bad.code == "invalid_field"
