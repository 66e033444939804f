"""``bmslink decode``: every malformed input (empty, not hex, odd length, not ASCII, any random
text) gives one clear line on stderr and exit status 1, never a traceback, while the other
frames on the command line are still decoded (issue 14 item 11)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmslink.cli import decode as cli_decode
from bmslink.cli import main
from bmslink.protocols import daly_a5 as a5
from bmslink.protocols import daly_modbus as dm
from bmslink.protocols import daly_sinowealth as sino
from bmslink.protocols import modbus_rtu as rtu

PYLONTECH_RS485 = (
    "~20024600B0D811020F0CF30CF40CF50CF40CF50CF40CF40CF30CF20CF20CF20CF30CF20CF30CF3050BD7"
    "0BB90BB90BB90BAF000CC2415BCC02C35000630F0CF30CF20CF30CF20CF30CF20CF30CF30CF40CF40CF30CF4"
    "0CF20CF50CF3050BD70BAF0BAF0BAF0BAF000BC23E59D802C3500093CC7D"
)
SINO_DATA = bytes.fromhex("0CE4")  # cell 1: 3300 mV

# protocol -> (options, a frame that decodes, a field of its JSON and the value)
GOOD: dict[str, tuple[list[str], str, str, object]] = {
    "pylontech-rs485": (["--command", "0x42"], PYLONTECH_RS485, "command", "0x42"),
    "pace-modbus": (
        ["--start", "0"],
        rtu.build_read_response(1, [0, 5120]).hex(),
        "count",
        2,
    ),
    "daly-a5": ([], a5.build_frame(0x01, 0x90, bytes(8)).hex(), "command", "0x90"),
    "daly-sinowealth": (
        ["--command", "0x01"],
        (SINO_DATA + bytes([sino.crc8_smbus(sino.build_request(0x01) + SINO_DATA)])).hex(),
        "command",
        "0x01",
    ),
    "daly-d2": (["--start", "0x100"], dm.build_read_response(1, [7, 8]).hex(), "count", 2),
    "daly-81": (["--start", "0x38"], dm.build_read_response(0x51, [520, 30000]).hex(), "board", 1),
    "pylontech-can": (["--id", "0x351"], "330209240924D501", "id", "0x351"),
}

MALFORMED = {
    "": "empty frame",
    "   ": "empty frame",
    "zz": "not hex: character 'z' at digit 1",
    "0x": "no hex digits",
    "abc": "odd number of hex digits (3)",
    "12 3": "odd number of hex digits (3)",
    "café": "",  # not hex for the binary protocols, not ASCII for RS485
    "€": "",
    "~2002\u00e946": "",
    "\U0001f50b": "",
}


def test_every_protocol_has_a_good_frame() -> None:
    assert set(GOOD) == set(cli_decode.registry())


def bmslink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bmslink.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("protocol", sorted(GOOD))
def test_malformed_frames_give_one_line_each_and_the_good_ones_still_decode(
    protocol: str,
) -> None:
    options, good, field, value = GOOD[protocol]
    bad = list(MALFORMED)
    proc = bmslink("decode", protocol, *options, good, *bad, good)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d[field] for d in docs] == [value, value]
    errors = proc.stderr.splitlines()
    assert len(errors) == len(bad), proc.stderr
    for n, (line, text) in enumerate(zip(errors, bad, strict=True), 2):
        assert line.startswith(f"bmslink decode: frame {n}: "), line
        assert "decoder bug" not in line, line
        needle = MALFORMED[text]
        if needle and not (
            protocol == "pylontech-rs485" and needle.startswith(("not", "odd", "no "))
        ):
            assert needle in line, line


def test_rs485_names_the_character_that_is_not_ascii() -> None:
    proc = bmslink("decode", "pylontech-rs485", "~2002\u00e946", "~20\u20ac")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines == [
        "bmslink decode: frame 1: character 'é' (U+00E9) at position 6 is not ASCII in '~2002é46'",
        "bmslink decode: frame 2: character '€' (U+20AC) at position 4 is not ASCII in '~20€'",
    ]


def test_binary_protocols_name_the_offending_digit() -> None:
    proc = bmslink("decode", "daly-a5", "A5 01 9G", "a5019")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "bmslink decode: frame 1: not hex: character 'G' at digit 6 of 'A5 01 9G'",
        "bmslink decode: frame 2: odd number of hex digits (5) in 'a5019': a byte is two digits",
    ]


def test_a_long_bad_frame_is_cut_in_the_error_line() -> None:
    proc = bmslink("decode", "pylontech-can", "--id", "0x351", "G" * 500)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert len(line) < 160 and line.endswith("…")


def run_in_process(protocol: str, frames: list[str]) -> tuple[int, str, str]:
    options, _, _, _ = GOOD[protocol]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_decode.add_parser(sub)
    args = parser.parse_args(["decode", protocol, *options, "--", *frames])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli_decode.run(args)
    return status, out.getvalue(), err.getvalue()


TEXT = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="0123456789abcdefABCDEF :-x~\\r\r\n", max_size=80),
    st.text(alphabet="0123456789ABCDEF", max_size=200).map(lambda t: "~" + t),
)


@pytest.mark.parametrize("protocol", sorted(GOOD))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_random_text_never_escapes_as_a_traceback(protocol: str, text: str) -> None:
    decoder = cli_decode.registry()[protocol]
    options, good, field, value = GOOD[protocol]
    # the decoder itself raises only its codec errors or ValueError (a clear message)
    ns = argparse.Namespace(command=None, start=None, can_id=None)
    for name, raw in zip(options[::2], options[1::2], strict=True):
        setattr(ns, {"--id": "can_id"}.get(name, name.lstrip("-")), int(raw, 0))
    try:
        decoder.decode(text, ns)
    except cli_decode.DecodeUsageError:
        raise
    except (*decoder.errors, ValueError):
        pass
    # and the command prints one line for it and still decodes the good frame after it
    status, out, err = run_in_process(protocol, [text, good])
    docs = [json.loads(line) for line in out.splitlines()]
    assert docs[-1][field] == value
    if status == 1:
        (line,) = err.splitlines()
        assert line.startswith("bmslink decode: frame 1: ") and "decoder bug" not in line
    else:
        assert status == 0 and err == "" and len(docs) == 2


def test_main_returns_1_for_a_bad_frame() -> None:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(io.StringIO()):
        assert main(["decode", "daly-d2", "xyz"]) == 1
    assert out.getvalue().startswith("bmslink decode: frame 1: not hex")
