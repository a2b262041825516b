"""Log lines carry the fields given with ``extra=``, except uvicorn's terminal decoration."""

import logging

import orjson

from allocator.api.logs import JsonFormatter, TextFormatter


def uvicorn_record() -> logging.LogRecord:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, "Started server process [%d]", (7,), None
    )
    record.color_message = "Started server process [\x1b[36m%d\x1b[0m]"
    return record


def test_uvicorn_colour_copies_of_messages_are_left_out() -> None:
    assert (
        TextFormatter().format(uvicorn_record()) == "INFO uvicorn.error: Started server process [7]"
    )
    document = orjson.loads(JsonFormatter().format(uvicorn_record()))
    assert "color_message" not in document
    assert document["message"] == "Started server process [7]"
