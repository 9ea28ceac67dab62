from pathlib import Path

import pytest

from shadoweval.cli import main
from shadoweval.config.base import ConfigError
from shadoweval.config.proxy import load, parse
from shadoweval.config.scorer import parse_scorer

ISSUE_EXAMPLE = """
listen: {host: 127.0.0.1, port: 8080}
admin: {host: 127.0.0.1, port: 9464}
primary: {name: prod, url: "http://127.0.0.1:9001"}
candidates:
  - name: cand-a
    url: "http://127.0.0.1:9002"
    model: small-model
    api_key_env: CAND_A_API_KEY
sampling: {rate: 1.0}
sink: {kind: file, path: pairs.jsonl}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_documented_shape_loads(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, ISSUE_EXAMPLE), environ={})
    assert cfg.primary.url == "http://127.0.0.1:9001"
    assert cfg.candidates[0].model == "small-model"
    assert cfg.sink.kind == "file"


def test_shipped_example_config_is_valid() -> None:
    cfg = load(Path(__file__).parents[2] / "config" / "shadoweval.yaml", environ={})
    assert cfg.candidates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("primary: {url: 'http://x'}\nsampling: {rat: 0.5}", "sampling.rat: unknown key"),
        ("primary: {url: 'ftp://x'}", "primary.url: must be an absolute http(s) URL"),
        ("{}", "primary: required key is missing"),
        (
            "primary: {url: 'http://x'}\nsampling: {rate: 2}",
            "sampling.rate: Input should be less than or equal to 1",
        ),
        (
            "primary: {url: 'http://x'}\nsampling: {key: user}",
            "sampling.key: must be 'body' or 'header:<header-name>'",
        ),
        (
            "primary: {url: 'http://x'}\ncandidates: [{name: a, url: 'http://y', forward_caller_auth: true}]",
            "forward_caller_auth is only allowed for role: control",
        ),
        (
            "primary: {url: 'http://x'}\ncandidates: [{name: a, url: 'http://y', paths: azure}]",
            "paths: azure needs model",
        ),
        (
            "primary: {url: 'http://x'}\ncandidates: [{name: a, url: 'http://y', paths: azure, model: d}]",
            "paths: azure needs ?api-version=... in url",
        ),
        (
            "primary: {url: 'http://x?api-version=1'}",
            "primary.url: must not carry a query string",
        ),
        (
            "primary: {name: a, url: 'http://x'}\ncandidates: [{name: a, url: 'http://y'}]",
            "upstream name 'a' is used twice",
        ),
        (
            "primary: {url: 'http://x'}\nredaction: {custom: [{name: x, pattern: '('}]}",
            "redaction.custom.0.pattern: not a valid regular expression",
        ),
        (
            "primary: {url: 'http://x'}\ncandidates: [{name: 'bad name', url: 'http://y'}]",
            "candidates.0.name: must be 1-63 characters",
        ),
        ("- just\n- a list", "the top level must be a mapping"),
    ],
)
def test_errors_name_the_key_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, text), environ={})
    assert expected in str(err.value)


def test_env_overrides_scalars_and_list_items() -> None:
    cfg = parse(
        {"primary": {"url": "http://a"}, "candidates": [{"name": "c", "url": "http://b"}]},
        environ={
            "SHADOWEVAL_PRIMARY__URL": "http://override:1",
            "SHADOWEVAL_SAMPLING__RATE": "0.25",
            "SHADOWEVAL_CANDIDATES__0__TIMEOUT_S": "3",
            "SHADOWEVAL_CONFIG": "not a config key",
        },
    )
    assert cfg.primary.url == "http://override:1"
    assert cfg.sampling.rate == 0.25
    assert cfg.candidates[0].timeout_s == 3


def test_env_override_out_of_range_index_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SHADOWEVAL_CANDIDATES__3__URL: list index"):
        parse(
            {"primary": {"url": "http://a"}, "candidates": []},
            environ={"SHADOWEVAL_CANDIDATES__3__URL": "http://x"},
        )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"SHADOWEVAL_SAMPLNG__RATE": "0.5"}, "SHADOWEVAL_SAMPLNG__RATE: unknown section 'samplng'"),
        ({"SHADOWEVAL_SAMPLING__RATTE": "0.5"}, "sampling.ratte (from SHADOWEVAL_SAMPLING__RATTE): unknown key"),
        ({"SHADOWEVAL_SAMPLING__RATE": "7"}, "sampling.rate (from SHADOWEVAL_SAMPLING__RATE): Input should be less"),
        ({"SHADOWEVAL_CANDIDATES__0__URL": "ftp://x"}, "candidates.0.url (from SHADOWEVAL_CANDIDATES__0__URL)"),
        ({"SHADOWEVAL_SINK__PATH": "[unclosed"}, "SHADOWEVAL_SINK__PATH: the value is not valid YAML"),
        ({"SHADOWEVAL_SAMPLING____RATE": "1"}, "SHADOWEVAL_SAMPLING____RATE: empty part"),
    ],
)  # fmt: skip
def test_env_override_errors_name_the_variable(environ: dict[str, str], expected: str) -> None:
    raw = {"primary": {"url": "http://a"}, "candidates": [{"name": "c", "url": "http://b"}]}
    with pytest.raises(ConfigError) as err:
        parse(raw, "shadoweval.yaml", environ=environ)
    message = str(err.value)
    assert expected in message
    assert "shadoweval.yaml" not in message  # the file is not where the mistake is


def test_errors_from_the_file_and_a_variable_each_say_where_they_are() -> None:
    with pytest.raises(ConfigError) as err:
        parse(
            {"primary": {"url": 1}}, "shadoweval.yaml", environ={"SHADOWEVAL_SAMPLING__RATE": "7"}
        )
    head, from_file, from_env = str(err.value).splitlines()
    assert head == "invalid configuration in shadoweval.yaml and environment variables:"
    assert from_file.strip().startswith("primary.url: ") and "SHADOWEVAL" not in from_file
    assert "(from SHADOWEVAL_SAMPLING__RATE)" in from_env


def test_variables_of_other_files_and_tools_are_not_overrides() -> None:
    """The scorer's and the review app's prefixes extend the proxy's; a variable without
    ``__`` that names no top-level key belongs to a tool (the review token, the soak test)."""
    environ = {
        "SHADOWEVAL_SCORE_SOURCE__PATH": "pairs.jsonl",
        "SHADOWEVAL_REVIEW_LISTEN__PORT": "8095",
        "SHADOWEVAL_REVIEW_TOKEN": "x" * 24,
        "SHADOWEVAL_SOAK_SECONDS": "20",
        "SHADOWEVAL_LOG_LEVEL": "debug",  # a top-level key: an override
    }
    cfg = parse({"primary": {"url": "http://a"}}, environ=environ)
    assert cfg.log_level == "debug"
    with pytest.raises(ConfigError, match="SHADOWEVAL_SCORE_SORCE__PATH: unknown section 'sorce'"):
        parse_scorer({}, environ={"SHADOWEVAL_SCORE_SORCE__PATH": "x"})
    with pytest.raises(
        ConfigError, match=r"source\.file\.paht \(from SHADOWEVAL_SCORE_SOURCE__PAHT\)"
    ):
        parse_scorer({}, environ={"SHADOWEVAL_SCORE_SOURCE__PAHT": "x"})


def test_an_override_fills_an_empty_section_of_the_file() -> None:
    cfg = parse(
        {"primary": {"url": "http://a"}, "sampling": None},
        environ={"SHADOWEVAL_SAMPLING__RATE": "0.5"},
    )
    assert cfg.sampling.rate == 0.5


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, ISSUE_EXAMPLE))]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out
    assert "CAND_A_API_KEY is not set" in out.err
    assert main(["check-config", str(write(tmp_path, "primary: {url: 1}"))]) == 2
    assert "primary.url" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(tmp_path / "nope.yaml")


def test_child_processes_get_the_secrets_a_dump_masks() -> None:
    from shadoweval.config.proxy import Config

    token = "an-admin-token-long-enough-0123456789"
    cfg = parse(
        {"primary": {"url": "http://p"}, "admin": {"port": 9101, "token": token}}, environ={}
    )
    assert cfg.model_dump(mode="json")["admin"]["token"] != token  # masked
    again = Config.model_validate(cfg.for_children())
    assert again.admin.token is not None and again.admin.token.get_secret_value() == token
    assert again == cfg
