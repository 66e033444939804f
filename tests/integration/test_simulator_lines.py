"""Battery simulator lines: pty and TCP transports, pacing, robustness, the CLI process."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from battery_simulator.line import FrameAssembler, PtyLine, TcpLine
from battery_simulator.pylontech import ModelStack, ReplayStack, parse_model_spec
from bmslink.protocols.pylontech_rs485 import decode_analog, parse_frame
from tests.vectors import vectors_dir

pytestmark = [pytest.mark.serial, pytest.mark.timeout(60)]

REQ_FF = b"~20024642E002FFFD09\r"
REQ_ADR2 = b"~20024642E00202FD33\r"


def capture_path() -> Path:
    path = vectors_dir() / "pylontech_rs485_capture.json"
    assert path.is_file(), f"capture vector missing: {path}"
    return path


def first_response() -> bytes:
    return str(json.loads(capture_path().read_text())["frames"][1]["frame"]).encode()


def transact(port: serial.SerialBase, request: bytes) -> tuple[bytes, float]:
    """Send ``request``, read to CR; return the reply and the elapsed time, s."""
    t0 = time.monotonic()
    port.write(request)
    reply = port.read_until(b"\r")
    return reply, time.monotonic() - t0


@pytest.fixture
def replay() -> ReplayStack:
    return ReplayStack.from_file(capture_path())


@pytest.fixture
def pty_line(replay: ReplayStack) -> Iterator[PtyLine]:
    with PtyLine(replay) as line:
        yield line


@pytest.fixture
def tcp_line(replay: ReplayStack) -> Iterator[TcpLine]:
    with TcpLine(replay, port=0) as line:
        yield line


def open_pty(path: str, baud: int = 115200) -> serial.Serial:
    return serial.Serial(path, baud, timeout=2.0)


def open_tcp(port: int) -> serial.SerialBase:
    return serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=2.0)


# ---------------------------------------------------------------------------------- framing


def test_assembler_discards_junk_and_splits_frames() -> None:
    asm = FrameAssembler()
    out = asm.feed(b"\x00\xffjunk~2002\r~abc~200246", 1.0) + asm.feed(b"42E002FFFD09\rtail", 2.0)
    assert out == [(b"~2002\r", 1.0), (b"~20024642E002FFFD09\r", 1.0)]
    assert asm.dropped == len(b"\x00\xffjunk") + len(b"~abc") + len(b"tail")
    asm.reset()
    assert asm.feed(b"X" * 10000 + b"\r", 3.0) == []


# ---------------------------------------------------------------------------------- pty / TCP


def test_pty_client_gets_reply(pty_line: PtyLine) -> None:
    assert pty_line.device_path.startswith("/dev/")
    with open_pty(pty_line.device_path) as port:
        reply, _ = transact(port, REQ_FF)
        assert reply == first_response()
        reply2, _ = transact(port, REQ_ADR2)  # derived per-address answer
        assert parse_frame(reply2).adr == 2


def test_tcp_client_gets_reply(tcp_line: TcpLine) -> None:
    assert tcp_line.port > 0
    with open_tcp(tcp_line.port) as port:
        reply, _ = transact(port, REQ_FF)
    assert reply == first_response()


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_reply_is_paced_at_baud(kind: str) -> None:
    stack = ModelStack(parse_model_spec("US2000C,US3000C,US5000"), seed=3)
    baud = 9600
    line: PtyLine | TcpLine = (
        PtyLine(stack, baud=baud) if kind == "pty" else TcpLine(stack, baud=baud)
    )
    with line:
        port = (
            open_tcp(line.port) if isinstance(line, TcpLine) else open_pty(line.device_path, baud)
        )
        with port:
            reply, elapsed = transact(port, REQ_FF)
    assert decode_analog(parse_frame(reply).info).command_value == 3
    assert len(reply) == 368
    # lower bound only: request + reply wire time (≈ 0.40 s at 9600 Bd) + turnaround
    assert elapsed >= (len(reply) + len(REQ_FF)) * 10 / baud


def test_turnaround_and_slow_fault_add_delay(replay: ReplayStack) -> None:
    replay.faults.slow = 0.3
    with PtyLine(replay, turnaround_s=0.05) as line, open_pty(line.device_path) as port:
        _, elapsed = transact(port, REQ_FF)
    assert elapsed >= 0.35


def test_one_stack_on_both_lines(replay: ReplayStack) -> None:
    responses = json.loads(capture_path().read_text())["frames"][1::2]
    with (
        PtyLine(replay) as pty,
        TcpLine(replay) as tcp,
        open_pty(pty.device_path) as p,
        open_tcp(tcp.port) as t,
    ):
        assert transact(p, REQ_FF)[0] == responses[0]["frame"].encode()
        assert transact(t, REQ_FF)[0] == responses[1]["frame"].encode()


# ---------------------------------------------------------------------------------- robustness


def test_garbage_input_then_valid_request(pty_line: PtyLine) -> None:
    with open_pty(pty_line.device_path) as port:
        port.write(os.urandom(300).replace(b"~", b"").replace(b"\r", b"") + b"~zz\r~")
        port.write(b"\r~20024642E002FFFD0")  # a lone "~\r" and a truncated frame ...
        reply, _ = transact(port, b"~20024642E002FFFD09\r")  # ... replaced by a full one
    assert reply == first_response()


def test_pty_client_reopens(pty_line: PtyLine) -> None:
    for _ in range(3):
        with open_pty(pty_line.device_path) as port:
            reply, _ = transact(port, REQ_FF)
            assert parse_frame(reply).cid2 == 0


def test_pty_client_closes_mid_reply(replay: ReplayStack) -> None:
    with PtyLine(replay, baud=2400) as line:  # the 234-byte FF reply takes ≈ 1 s
        with open_pty(line.device_path) as port:
            port.write(REQ_FF)
            assert port.read(10)  # reply has started
        with open_pty(line.device_path, 2400) as port:
            # the stack finishes the old reply (as a real one would); its tail may reach the
            # new client first: take the frame from the last "~" (doc §10.1)
            port.timeout = 10.0
            port.write(REQ_ADR2)
            data = port.read_until(b"\r")
            if not data.startswith(b"~"):
                data = port.read_until(b"\r")
        assert parse_frame(data[data.rindex(b"~") :]).adr == 2


def test_tcp_client_disconnect_and_replacement(tcp_line: TcpLine) -> None:
    old = socket.create_connection(("127.0.0.1", tcp_line.port), timeout=2)
    old.sendall(REQ_FF)
    old.close()  # disconnect while (or before) the reply is written
    first = open_tcp(tcp_line.port)
    second = open_tcp(tcp_line.port)  # replaces the first client
    with first, second:
        reply, _ = transact(second, REQ_FF)
        assert parse_frame(reply).cid2 == 0
        # the replaced client is closed by the simulator
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                first.write(REQ_FF)
                if first.read(1) == b"":
                    break
            except (serial.SerialException, OSError):
                break
        else:
            pytest.fail("replaced TCP client was not dropped")
        reply, _ = transact(second, REQ_FF)
        assert parse_frame(reply).cid2 == 0


def test_responder_exception_does_not_kill_line() -> None:
    class Flaky:
        extra_delay_s = 0.0
        calls = 0

        def respond(self, request: bytes) -> bytes | None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")
            return b"~200246000000FDB2\r"

    with PtyLine(Flaky()) as line, open_pty(line.device_path) as port:
        port.timeout = 0.3
        assert transact(port, REQ_FF)[0] == b""
        port.timeout = 2.0
        assert transact(port, REQ_FF)[0] == b"~200246000000FDB2\r"


# ---------------------------------------------------------------------------------- CLI


def start_app(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "battery_simulator.app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], timeout: float = 20.0) -> dict[str, str]:
    """Wait for the READY line; return its key=value fields."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                return dict(item.split("=", 1) for item in line.split()[1:])
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"simulator not ready (rc={proc.returncode}): {err}")


def test_app_serves_tcp_and_pty_and_exits_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "ttyPYLON"
    proc = start_app(
        "--tcp", "127.0.0.1:0", "--pty-link", str(link), "--replay", str(capture_path())
    )
    try:
        ready = wait_ready(proc)
        assert ready["pty"] == str(link)
        host, port = ready["tcp"].rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
        assert link.is_symlink()
        with open_tcp(int(port)) as t:
            assert transact(t, REQ_FF)[0] == first_response()
        with open_pty(str(link)) as p:
            assert parse_frame(transact(p, REQ_FF)[0]).cid2 == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not link.exists()
    assert not link.is_symlink()


def test_app_model_sigint(tmp_path: Path) -> None:
    proc = start_app("--pty", "--model", "US2000C,US5000", "--baud", "9600", "--seed", "1")
    try:
        ready = wait_ready(proc)
        assert ready["tcp"] == "-"
        with open_pty(ready["pty"], 9600) as p:
            values = decode_analog(parse_frame(transact(p, REQ_FF)[0]).info)
        assert values.command_value == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--model", "US2000C"], "--tcp"),
        (["--tcp", "127.0.0.1:0"], "--replay"),
        (["--tcp", "127.0.0.1:0", "--model", "US9000"], "--model"),
        (["--tcp", "nonsense", "--model", "US2000C"], "--tcp"),
        (["--tcp", "127.0.0.1:0", "--model", "US2000C", "--baud", "0"], "--baud"),
        (["--tcp", "127.0.0.1:0", "--replay", "/nonexistent.json"], "--replay"),
    ],
)
def test_app_bad_arguments_exit_2(args: list[str], option: str) -> None:
    proc = start_app(*args)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert option in err


def test_app_bad_capture_content_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("this is not a capture\n")
    proc = start_app("--tcp", "127.0.0.1:0", "--replay", str(bad))
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "--replay" in err
