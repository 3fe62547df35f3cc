"""The SMSConfig.xml -> gateways YAML migration helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from twoway.gateways.config import load_gateways
from twoway.gateways.migrate import convert, main

SMSCONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<SMSConfig>
  <gateway hostName="kannel.example.com" id="kannelgw" port="13013"
           programName="/cgi-bin/sendsms" toParamName="to" textParamName="text"
           fromParamName="from">
    <parameter encode="true" name="username" value="worklight"/>
    <parameter encode="true" name="password" value="worklight"/>
    <parameter name="api_key" value="k"/>
    <parameter name="smsc" value="smsc1"/>
  </gateway>
  <gateway hostName="sms.example.com" id="second gw" protocol="https"
           programName="send" toParamName="msisdn" textParamName="msg"/>
</SMSConfig>
"""


def test_convert() -> None:
    document = convert(SMSCONFIG)
    assert document["default_gateway"] == "kannelgw"
    first, second = document["gateways"]
    assert first == {
        "id": "kannelgw",
        "type": "mobilefirst-http",
        "url": "http://kannel.example.com:13013/cgi-bin/sendsms",
        "to_param": "to",
        "from_param": "from",
        "text_param": "text",
        "parameters": {"username": "worklight", "smsc": "smsc1"},
        "secret_parameters": {"password": "KANNELGW_PASSWORD", "api_key": "KANNELGW_API_KEY"},
    }
    assert (second["id"], second["url"], second["to_param"], second["text_param"]) == (
        "second-gw",
        "https://sms.example.com/send",
        "msisdn",
        "msg",
    )


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<SMSConfig/>", "no <gateway>"),
        ("<SMSConfig><gateway", "not XML"),
        ('<SMSConfig><gateway hostName="h"/></SMSConfig>', "no id"),
    ],
    ids=["no-gateway", "not-xml", "no-id"],
)
def test_convert_refuses(xml: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert(xml)


def test_main_prints_yaml_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "SMSConfig.xml"
    source.write_text(SMSCONFIG)
    assert main([str(source)]) == 0
    printed = capsys.readouterr().out
    assert "KANNELGW_API_KEY, KANNELGW_PASSWORD" in printed
    target = tmp_path / "gateways.yaml"
    target.write_text(printed)
    loaded = load_gateways(target)
    assert [gateway.id for gateway in loaded.gateways] == ["kannelgw", "second-gw"]
    assert (
        loaded.gateways[0].secret_parameters
        == convert(SMSCONFIG)["gateways"][0]["secret_parameters"]
    )


def test_main_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing.xml")]) == 1
    assert "missing.xml" in capsys.readouterr().err
