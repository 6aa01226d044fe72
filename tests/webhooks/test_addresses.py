"""Webhook URLs: only public addresses unless the operator allows private ones."""

from __future__ import annotations

import pytest

from app.webhooks.addresses import UnsafeURL, check_url, is_public

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",  # unique local
    "http://100.64.0.1/hook",  # shared address space (CGNAT)
    "http://0.0.0.0/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:10.0.0.1]/hook",
    "http://224.0.0.1/hook",  # multicast
    "https://2130706433/hook",  # 127.0.0.1 written as one number
]


@pytest.mark.parametrize("url", REFUSED)
def test_loopback_private_and_link_local_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL, match="loopback, private or link-local"):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", REFUSED)
def test_an_operator_may_allow_them(url: str) -> None:
    assert check_url(url, allow_private=True).addresses


def test_a_public_address_passes_with_its_port() -> None:
    target = check_url("https://93.184.215.14:8443/hooks?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port) == ("https", "93.184.215.14", 8443)
    assert [str(address) for address in target.addresses] == ["93.184.215.14"]
    assert is_public(target.addresses[0])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://93.184.215.14/", "http:// or https://"),
        ("/relative/path", "http:// or https://"),
        ("http:///no-host", "http:// or https://"),
        ("http://93.184.215.14:99999/", "not a valid URL"),
        ("http://93.184.215.14/a b", "spaces"),
        ("http://no-such-host.invalid/", "could not be resolved"),
        ("http://93.184.215.14/" + "a" * 2100, "at most 2048"),
    ],
)
def test_a_malformed_or_unresolvable_url_is_refused_saying_why(url: str, words: str) -> None:
    with pytest.raises(UnsafeURL, match=words):
        check_url(url, allow_private=True)
