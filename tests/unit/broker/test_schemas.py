"""The broker's documented answers (broker/schemas.py) name the states the code has."""

from typing import get_args, get_type_hints

from broker.previews import OOTS_PREVIEW_CODE, PREVIEW_REQUIRED, PREVIEW_STATES
from broker.schemas import Preview, PreviewRequired


def test_a_preview_is_documented_with_every_state_of_the_desk() -> None:
    assert get_args(get_type_hints(Preview)["status"]) == PREVIEW_STATES


def test_the_202_is_documented_with_the_desks_status_and_code() -> None:
    hints = get_type_hints(PreviewRequired)
    assert get_args(hints["status"]) == (PREVIEW_REQUIRED,)
    assert get_args(hints["code"]) == (OOTS_PREVIEW_CODE,)
