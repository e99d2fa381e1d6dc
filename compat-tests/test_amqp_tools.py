"""Debian's amqp-tools (rabbitmq-c) command-line clients against the broker under test."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
from compat_support import Scratch

TOOLS = ("amqp-publish", "amqp-consume", "amqp-declare-queue", "amqp-get", "amqp-delete-queue")
TOOL_TIMEOUT_S = 10.0

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="amqp-tools is not installed (apt-get install amqp-tools, or `make system-deps`)",
)


def tool_url(url: str) -> str:
    """rabbitmq-c reads a trailing "/" as the empty vhost; without a path it uses "/"."""
    return "--url=" + (url[:-1] if urlsplit(url).path == "/" else url)


def run(*args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        args, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def test_declare_publish_get_and_consume(scratch: Scratch) -> None:
    q = scratch.queue()
    url = tool_url(scratch.url)
    assert run("amqp-declare-queue", url, f"--queue={q}").strip() == q.encode()
    run("amqp-publish", url, f"--routing-key={q}", "--body=first")
    run(
        "amqp-publish",
        url,
        f"--routing-key={q}",
        "--content-type=text/plain",
        "--header",
        "origin: amqp-tools",
        "--persistent",
        "--body=second",
    )
    run("amqp-publish", url, f"--routing-key={q}", "--line-buffered", stdin=b"third\nfourth\n")
    assert run("amqp-get", url, f"--queue={q}") == b"first"
    consumed = run("amqp-consume", url, f"--queue={q}", "--count=3", "cat")
    assert consumed == b"secondthird\nfourth\n"
    ch = scratch.channel()
    assert ch.queue_declare(q, passive=True).method.message_count == 0
    run("amqp-delete-queue", url, f"--queue={q}")


def test_amqp_consume_sees_properties_set_by_amqp_publish(scratch: Scratch) -> None:
    q = scratch.queue()
    url = tool_url(scratch.url)
    ch = scratch.channel()
    ch.queue_declare(q)
    run(
        "amqp-publish",
        url,
        f"--routing-key={q}",
        "--content-type=application/json",
        "--content-encoding=identity",
        "--reply-to=answers",
        "--header",
        "origin: amqp-tools",
        "--persistent",
        '--body={"a": 1}',
    )
    _method, props, body = ch.basic_get(q, auto_ack=True)
    assert body == b'{"a": 1}'
    assert (
        props.content_type,
        props.content_encoding,
        props.reply_to,
        props.delivery_mode,
        props.headers,
    ) == ("application/json", "identity", "answers", 2, {"origin": "amqp-tools"})
    ch.basic_publish("", q, b"from-pika")
    assert run("amqp-consume", url, f"--queue={q}", "--count=1", "cat") == b"from-pika"
