"""service/admission.py: the one table of error statuses, and the headers a refusal carries."""
from __future__ import annotations

import pytest

from service.admission import STATUS_OF, Unavailable, error_code, error_status, retry_headers
from service.decode import InputError
from service.engine import EngineError, EngineStopped, InferenceTimeout, Overloaded
from service.settings import Settings


@pytest.mark.parametrize("error, status, code", [
    (InputError(415, "unsupported_format", "not an image"), 415, "unsupported_format"),
    (Unavailable("not_ready", "warming up"), 503, "not_ready"),
    (Overloaded(3), 503, "overloaded"),
    (InferenceTimeout("no heatmap in 300 s"), 504, "timeout"),
    (EngineStopped("stopping"), 503, "shutting_down"),
    (EngineError("ORT failed"), 500, "inference_failed"),
])
def test_every_error_maps_to_one_code_and_status(error, status, code):
    assert error_code(error)[0] == code and error_status(error) == status
    assert code in STATUS_OF or isinstance(error, InputError)


def test_retry_after_where_waiting_helps():
    settings = Settings(retry_after_s=6)
    assert retry_headers(Unavailable("overloaded", "full"), settings) == {"Retry-After": "6", "Connection": "close"}
    assert retry_headers(Overloaded(9), settings) == {"Retry-After": "9"}
    assert retry_headers(EngineStopped("stopping"), settings) == {"Retry-After": "6"}
    assert retry_headers(InferenceTimeout("late"), settings) is None
    assert retry_headers(InputError(422, "corrupt_image", "cut"), settings) is None
