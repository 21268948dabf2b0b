"""The reference example of the Genesys API, verbatim and corrected (see the contract)."""

from __future__ import annotations

REFERENCE_SERVICE_ID = 21456878

REFERENCE_BODY_VERBATIM = (
    b'{ "interaction_id":42, "est_duration":460, "state_id":24, "task_type":customer info, '
    b'"Survey": { "url":"http://ourServer/storage/userAnswers", "question1":7, "question2":true, '
    b'"question3":"will be better with cable tv and on-demand video" }, "Proposal": [ '
    b'{ "car type":"cabriolet", "price":25 000, "seats":2, "comments":"200 cv, hardtop" }, '
    b'{ "car type":"S.U.V.", "price":70 000, "seats":8, "comments":"4wd, leather seats" } ] }'
)

REFERENCE_BODY_SYNTAX_FIXED = (
    REFERENCE_BODY_VERBATIM.replace(b":customer info", b':"customer info"')
    .replace(b"25 000", b"25000")
    .replace(b"70 000", b"70000")
)
"""The verbatim example with only its JSON syntax fixed: `"interaction_id":42` stays a number."""

REFERENCE_BODY = (
    b'{ "interaction_id":"42", "est_duration":460, "state_id":24, "task_type":"customer info", '
    b'"Survey": { "url":"http://ourServer/storage/userAnswers", "question1":7, "question2":true, '
    b'"question3":"will be better with cable tv and on-demand video" }, "Proposal": [ '
    b'{ "car type":"cabriolet", "price":25000, "seats":2, "comments":"200 cv, hardtop" }, '
    b'{ "car type":"S.U.V.", "price":70000, "seats":8, "comments":"4wd, leather seats" } ] }'
)

REFERENCE_ATTACHED = {
    "Survey": {
        "url": "http://ourServer/storage/userAnswers",
        "question1": 7,
        "question2": True,
        "question3": "will be better with cable tv and on-demand video",
    },
    "Proposal": [
        {"car type": "cabriolet", "price": 25000, "seats": 2, "comments": "200 cv, hardtop"},
        {"car type": "S.U.V.", "price": 70000, "seats": 8, "comments": "4wd, leather seats"},
    ],
}
