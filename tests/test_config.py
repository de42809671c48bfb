"""fastws.config: one declaration per knob, three spellings, early and explicit errors."""

import argparse
import dataclasses
import logging
import math
import os
import pickle
from collections.abc import Callable
from typing import Any, cast

import pytest

from fastws.config import (
    MAX_SIZE,
    Config,
    ConfigError,
    Option,
    import_object,
    parse_duration,
    parse_size,
)

OPTIONS = Config.options()

# Config accepts the strings the CLI accepts; its annotations (rightly) only
# advertise the parsed types, so the tests call it through an untyped alias.
make_config = cast("Callable[..., Config]", Config)
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def ids(options: tuple[Option, ...]) -> list[str]:
    return [option.name for option in options]


def cli_namespace(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    return parser.parse_args(argv)


# --- parse_size ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (0, 0),
        (1048576, MiB),
        ("1048576", MiB),
        ("16MiB", 16 * MiB),
        ("16 MiB", 16 * MiB),
        ("  64KiB ", 64 * KiB),
        ("2GiB", 2 * GiB),
        ("1TiB", 1024 * GiB),
        ("1.5MiB", 3 * MiB // 2),
        ("512k", 512 * KiB),
        ("512K", 512 * KiB),
        ("4m", 4 * MiB),
        ("1g", GiB),
        ("8kib", 8 * KiB),
        ("1KB", 1000),
        ("1MB", 1000**2),
        ("1GB", 1000**3),
        ("1.5kB", 1500),
        ("100B", 100),
        ("1_000_000", 1_000_000),
    ],
)
def test_parse_size_accepts_ints_and_unit_strings(given: str | int, expected: int) -> None:
    """Binary units are powers of 1024, decimal units powers of 1000; case and spaces are free."""
    assert parse_size(given) == expected


@pytest.mark.parametrize(
    "given",
    ["", "MiB", "12XB", "ten", "-1", "-1MiB", "1e6", "1.5.2k", "1 2", "0x10", "1,5MiB", "16 MiBs"],
)
def test_parse_size_rejects_garbage_with_examples(given: str) -> None:
    """A bad size says what it got and shows what a size looks like."""
    with pytest.raises(ValueError, match="is not a size") as info:
        parse_size(given)
    assert repr(given) in str(info.value)
    assert "64KiB" in str(info.value)


@pytest.mark.parametrize("given", [-1, True, 1.5, 1e6, None, b"1"])
def test_parse_size_rejects_non_sizes(given: object) -> None:
    """Negative numbers, booleans and floats are not byte counts."""
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(given)  # type: ignore[arg-type]


@pytest.mark.parametrize("given", ["1.5", "0.3KiB", "1.0000001KB"])
def test_parse_size_rejects_fractions_of_a_byte(given: str) -> None:
    """Fractions are fine only when they come out as whole bytes, so nothing is silently rounded."""
    with pytest.raises(ValueError, match="whole number of bytes"):
        parse_size(given)


# --- parse_duration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("10", 10.0),
        ("10s", 10.0),
        ("10 s", 10.0),
        ("500ms", 0.5),
        ("100ms", 0.1),
        ("2m", 120.0),
        ("1.5s", 1.5),
        (".25", 0.25),
        ("1h", 3600.0),
        ("10S", 10.0),
        ("0", 0.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration_accepts_numbers_and_units(given: str | float, expected: float) -> None:
    """A bare number is seconds; ms, s, m and h are accepted."""
    result = parse_duration(given)
    assert result == expected
    assert type(result) is float


@pytest.mark.parametrize(
    "given", ["", "s", "-1", "-1s", "10x", "fast", "1d", "10sec", True, math.nan, math.inf, -2.0]
)
def test_parse_duration_rejects_garbage(given: object) -> None:
    """Negative, infinite, NaN and unit-less garbage are refused with examples."""
    with pytest.raises(ValueError, match=r"is not a duration .*500ms"):
        parse_duration(given)  # type: ignore[arg-type]


# --- Config: defaults and conversions ---------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    """The defaults are part of the public contract (README table, API draft)."""
    config = Config()
    assert config.host == "127.0.0.1"
    assert config.port == 8000
    assert config.backlog == 2048
    assert config.subprotocols == ()
    assert config.origins is None
    assert config.process_request is None
    assert config.max_message_size == 16 * MiB
    assert config.max_frame_size is None
    assert config.max_fragments == 100_000
    assert config.max_queue == 16
    assert config.write_limit == 64 * KiB
    assert config.max_request_line == 8 * KiB
    assert config.max_headers == 128
    assert config.max_header_size == 16 * KiB
    assert config.handshake_timeout == 10.0
    assert config.close_timeout == 10.0
    assert config.ping_interval == 20.0
    assert config.ping_timeout == 20.0
    assert config.loop == "auto"
    assert config.log_level == "info"
    assert config.workers == (os.cpu_count() or 1)
    assert config.socket_mode == "reuseport"
    assert config.uds is None
    assert config.fd is None
    assert config.worker_timeout == 30.0
    assert config.graceful_timeout == 30.0
    assert config.max_connections is None


def test_config_is_frozen() -> None:
    """A running server shares its Config; nobody may change it behind its back."""
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_config_is_keyword_only() -> None:
    """Positional arguments would silently shift meaning whenever a knob is added."""
    with pytest.raises(TypeError):
        make_config("0.0.0.0")


def test_strings_are_parsed_like_the_cli() -> None:
    """fastws.run(handler, max_message_size="1MiB") means what --max-message-size 1MiB means."""
    config = make_config(
        port="0",
        max_message_size="1MiB",
        handshake_timeout="500ms",
        subprotocols="chat, superchat",
        loop="UVLOOP",
    )
    assert config.port == 0
    assert config.max_message_size == MiB
    assert config.handshake_timeout == 0.5
    assert config.subprotocols == ("chat", "superchat")
    assert config.loop == "uvloop"


def test_python_values_are_normalized() -> None:
    """Lists become tuples (hashable, immutable) and int durations become floats."""
    config = make_config(subprotocols=["chat"], origins=["https://a.example"], close_timeout=3)
    assert config.subprotocols == ("chat",)
    assert config.origins == ("https://a.example",)
    assert config.close_timeout == 3.0
    assert type(config.close_timeout) is float


@pytest.mark.parametrize("off", [None, 0, 0.0, "0", "0s", "off", "OFF", "none"])
@pytest.mark.parametrize("name", ["ping_interval", "ping_timeout"])
def test_keepalive_can_be_turned_off(name: str, off: object) -> None:
    """None, 0 and "off" all mean disabled, and are normalized to None for the server."""
    assert getattr(make_config(**{name: off}), name) is None


def test_max_frame_size_none_follows_max_message_size() -> None:
    """The server enforces effective_max_frame_size, which is never above max_message_size."""
    assert make_config(max_message_size="1MiB").effective_max_frame_size == MiB
    assert (
        make_config(max_message_size="1MiB", max_frame_size="none").effective_max_frame_size == MiB
    )
    assert make_config(max_frame_size="64KiB").effective_max_frame_size == 64 * KiB
    capped = make_config(max_message_size="1MiB", max_frame_size="2MiB")
    assert capped.effective_max_frame_size == MiB


def test_origins_empty_string_means_unset_and_empty_entry_means_no_origin() -> None:
    """FASTWS_ORIGINS= must not lock everyone out; a trailing comma admits clients without Origin."""
    assert make_config(origins="").origins is None
    assert make_config(origins="https://a.example,").origins == ("https://a.example", "")
    assert make_config(origins=["https://a.example", ""]).origins == ("https://a.example", "")


def test_subprotocols_ignore_empty_entries() -> None:
    """A stray comma in a subprotocol list has no meaning, so it is not an error either."""
    assert make_config(subprotocols="chat,,superchat,").subprotocols == ("chat", "superchat")
    assert make_config(subprotocols="").subprotocols == ()


def test_sizes_accept_the_largest_frame_length() -> None:
    """Frame lengths are 63-bit; the limit must be expressible up to that."""
    assert make_config(max_message_size=MAX_SIZE).max_message_size == 2**63 - 1


def test_process_request_import_path_is_resolved() -> None:
    """The hook may come from the CLI or env as a string; the server always gets a callable."""
    config = make_config(process_request="os.path:join")
    assert config.process_request is import_object("os.path:join")

    def hook(request: object) -> None:
        return None

    assert make_config(process_request=hook).process_request is hook


def test_config_pickles() -> None:
    """Worker processes receive the Config by pickling; validation must not get in the way."""
    config = make_config(port=0, subprotocols="chat", process_request="os.path:join")
    assert pickle.loads(pickle.dumps(config)) == config


def test_replace_validates_again() -> None:
    """dataclasses.replace() is the way to derive a Config; it can't sneak a bad value in."""
    config = Config()
    changes: dict[str, Any] = {"port": "9000"}
    assert dataclasses.replace(config, **changes).port == 9000
    with pytest.raises(ConfigError, match="port"):
        dataclasses.replace(config, port=70000)


# --- Config: errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("host", "", "non-empty"),
        ("host", "local host", "one non-empty word"),
        ("host", 127, "not a string"),
        ("port", 70000, "above the maximum of 65535"),
        ("port", -1, "below the minimum of 0"),
        ("port", "notanumber", "not an integer"),
        ("port", 80.5, "not an integer"),
        ("port", True, "not an integer"),
        ("backlog", 0, "below the minimum of 1"),
        ("subprotocols", "chat room", "not a valid subprotocol name"),
        ("subprotocols", ["chat", 1], "not a list of strings"),
        ("subprotocols", None, "not a list of strings"),
        ("origins", ["https://a.example b"], "not a valid Origin value"),
        ("origins", "https://a.example", None),  # sanity: valid
        ("process_request", 42, "not callable"),
        ("process_request", "os:sep", "not callable"),
        ("process_request", "no_such_module_xyz:hook", "No module named 'no_such_module_xyz'"),
        ("process_request", "os:no_such_hook", "has no attribute 'no_such_hook'"),
        ("process_request", "just_a_module", "expected 'module:attribute'"),
        ("max_message_size", "12XB", "is not a size"),
        ("max_message_size", 0, "below the minimum of 1"),
        ("max_message_size", -5, "can't be negative"),
        ("max_message_size", 2**63, "above the maximum"),
        ("max_message_size", 1.5, "is not a size"),
        ("max_frame_size", "0", "below the minimum of 1"),
        ("max_fragments", 0, "below the minimum of 1"),
        ("max_queue", "0", "below the minimum of 1"),
        ("write_limit", "-1", "is not a size"),
        ("max_request_line", "big", "is not a size"),
        ("max_headers", "many", "not an integer"),
        ("max_header_size", 0, "below the minimum of 1"),
        ("handshake_timeout", 0, "greater than 0"),
        ("handshake_timeout", "off", "is not a duration"),
        ("handshake_timeout", None, "is not a duration"),
        ("close_timeout", "soon", "is not a duration"),
        ("close_timeout", -1, "is not a duration"),
        ("ping_interval", "-1s", "is not a duration"),
        ("ping_timeout", math.nan, "is not a duration"),
        ("loop", "trio", "not one of auto, uvloop, asyncio"),
        ("log_level", "verbose", "not one of debug, info, warning, error"),
    ],
)
def test_bad_values_raise_config_error_naming_the_knob(
    name: str, value: object, reason: str | None
) -> None:
    """Whatever the source of a bad value, the message names all the ways to set the knob."""
    if reason is None:
        make_config(**{name: value})
        return
    with pytest.raises(ConfigError) as info:
        make_config(**{name: value})
    message = str(info.value)
    flag, env = "--" + name.replace("_", "-"), "FASTWS_" + name.upper()
    assert message.startswith(f"invalid value for {name} ({flag} / {env}): ")
    assert reason in message
    assert "\n" not in message
    assert info.value.option == name


def test_error_message_example_from_the_spec() -> None:
    """The exact wording users will see (and may search for)."""
    with pytest.raises(ConfigError) as info:
        make_config(max_message_size="12XB")
    assert str(info.value) == (
        "invalid value for max_message_size (--max-message-size / FASTWS_MAX_MESSAGE_SIZE): "
        "'12XB' is not a size (examples: 1048576, 64KiB, 16MiB, 2GiB)"
    )


def test_config_error_is_a_value_error() -> None:
    """Callers catching ValueError (the conventional bad-argument error) keep working."""
    assert issubclass(ConfigError, ValueError)


def test_unknown_option_is_a_config_error_with_a_suggestion() -> None:
    """A misspelled keyword must fail loudly, not be ignored, and point at the right name."""
    with pytest.raises(
        ConfigError, match=r"unknown option 'max_mesage_size' \(did you mean max_message_size\?\)"
    ):
        make_config(max_mesage_size=1)
    with pytest.raises(ConfigError, match="unknown option 'bogus'"):
        Config.load(environ={}, bogus=1)


# --- Config.load: sources and precedence -------------------------------------------------


def test_load_uses_defaults_without_sources() -> None:
    assert Config.load(environ={}) == Config()


def test_env_beats_default() -> None:
    assert Config.load(environ={"FASTWS_PORT": "9000"}).port == 9000


def test_kwarg_beats_env() -> None:
    assert Config.load(environ={"FASTWS_PORT": "9000"}, port=9001).port == 9001


def test_cli_flag_beats_env() -> None:
    namespace = cli_namespace("--port", "9001")
    assert Config.load(namespace, environ={"FASTWS_PORT": "9000"}).port == 9001


def test_env_still_applies_when_other_flags_are_given() -> None:
    """Flags not given on the command line must not hide the environment with their defaults."""
    namespace = cli_namespace("--host", "0.0.0.0")
    config = Config.load(namespace, environ={"FASTWS_PORT": "9000"})
    assert (config.host, config.port) == ("0.0.0.0", 9000)


def test_kwarg_beats_cli_flag() -> None:
    namespace = cli_namespace("--port", "9001")
    assert Config.load(namespace, environ={}, port=9002).port == 9002


def test_cli_may_be_a_plain_mapping() -> None:
    assert Config.load({"port": "9001", "app": "ignored"}, environ={}).port == 9001


def test_empty_env_var_counts_as_unset() -> None:
    """`FASTWS_PORT= fastws serve` (common in compose files) means "use the default"."""
    assert Config.load(environ={"FASTWS_PORT": "", "FASTWS_HOST": "  "}) == Config()


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTWS_MAX_QUEUE", "3")
    assert Config.load().max_queue == 3


def test_bad_env_value_names_the_env_var() -> None:
    with pytest.raises(ConfigError, match=r"\(--port / FASTWS_PORT\): 'x' is not an integer"):
        Config.load(environ={"FASTWS_PORT": "x"})


def test_unknown_fastws_env_var_warns(caplog: pytest.LogCaptureFixture) -> None:
    """A typo in an environment variable would otherwise be silently ignored."""
    with caplog.at_level(logging.WARNING, logger="fastws"):
        config = Config.load(environ={"FASTWS_PROT": "1", "FASTWS_PORT": "9000"})
    assert config.port == 9000
    [record] = caplog.records
    assert record.name == "fastws.config"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "ignoring unknown environment variable FASTWS_PROT (did you mean FASTWS_PORT?)"
    )


def test_test_suite_env_vars_are_not_server_options(caplog: pytest.LogCaptureFixture) -> None:
    """FASTWS_TEST_* variables configure fastws' own test suite (CI sets some for every
    process); the server neither uses nor warns about them."""
    with caplog.at_level(logging.WARNING, logger="fastws"):
        Config.load(environ={"FASTWS_TEST_BROWSERS": "required"})
    assert caplog.records == []


def test_other_env_vars_are_ignored_quietly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fastws"):
        Config.load(environ={"PORT": "1", "PATH": "/bin", "XFASTWS_PORT": "1"})
    assert caplog.records == []


# --- every knob, generated from the declaration --------------------------------------------


@pytest.mark.parametrize("option", OPTIONS, ids=ids(OPTIONS))
def test_every_knob_is_spelled_consistently(option: Option) -> None:
    """One name, three spellings: the rule the whole project relies on."""
    assert option.flag == "--" + option.name.replace("_", "-")
    assert option.env == "FASTWS_" + option.name.upper()
    assert option.help.strip() and option.help[0].isupper() and option.help.endswith(".")
    assert option.metavar


@pytest.mark.parametrize("option", OPTIONS, ids=ids(OPTIONS))
def test_every_knob_example_is_valid_and_not_the_default(option: Option) -> None:
    """The declared example must exercise the knob, else the checks below prove nothing."""
    value = getattr(make_config(**{option.name: option.example}), option.name)
    assert value != getattr(Config(), option.name)


@pytest.mark.parametrize("option", OPTIONS, ids=ids(OPTIONS))
def test_every_knob_is_reachable_by_env(option: Option) -> None:
    expected = getattr(make_config(**{option.name: option.example}), option.name)
    config = Config.load(environ={option.env: option.example})
    assert getattr(config, option.name) == expected


@pytest.mark.parametrize("option", OPTIONS, ids=ids(OPTIONS))
def test_every_knob_is_reachable_by_cli_flag(option: Option) -> None:
    expected = getattr(make_config(**{option.name: option.example}), option.name)
    config = Config.load(cli_namespace(option.flag, option.example), environ={})
    assert getattr(config, option.name) == expected
    config = Config.load(cli_namespace(f"{option.flag}={option.example}"), environ={})
    assert getattr(config, option.name) == expected


@pytest.mark.parametrize("option", OPTIONS, ids=ids(OPTIONS))
def test_every_knob_default_is_valid(option: Option) -> None:
    """The documented default, when it is a value, parses back to the actual default."""
    if option.default_literal:
        assert make_config(**{option.name: option.default_text}) == Config()


# --- docs -------------------------------------------------------------------------------


def test_fields_table_documents_every_knob() -> None:
    """The README table is generated, so it can't forget a knob or drift from the code."""
    lines = Config.fields_table().splitlines()
    assert lines[0] == "| option | CLI | env | default | meaning |"
    assert lines[1] == "| --- | --- | --- | --- | --- |"
    rows = lines[2:]
    assert len(rows) == len(OPTIONS)
    for row, option in zip(rows, OPTIONS, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[0] == f"`{option.name}`"
        assert cells[1] == f"`{option.flag} {option.metavar}`"
        assert cells[2] == f"`{option.env}`"
        assert option.default_text in cells[3]
        assert cells[4] == option.help


def test_fields_table_shows_human_defaults() -> None:
    table = Config.fields_table()
    assert "| `16MiB` |" in table
    assert "| `64KiB` |" in table
    assert "| `20s` |" in table
    assert "| any |" in table  # origins: an absence, not something to type


def test_readme_options_table_is_the_generated_one() -> None:
    """The README shows exactly Config.fields_table(): a new or changed knob cannot be
    missing from the documentation (regenerate with the command in the README comment)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert Config.fields_table().rstrip("\n") in readme


def test_a_switch_flag_alone_means_on() -> None:
    """`fastws serve --dashboard`: a switch needs no value on the command line."""
    assert Config.load(cli_namespace("--dashboard"), environ={}).dashboard is True
    assert Config.load(cli_namespace("--dashboard", "off"), environ={}).dashboard is False
    assert Config.load(environ={"FASTWS_DASHBOARD": "yes"}).dashboard is True
    with pytest.raises(ConfigError, match="an APP goes before the flag"):
        Config(dashboard="app:handler")
