"""Webhook URLs: public addresses only, unless mesh.yaml's server.push.allowed_networks lets a network in."""

import ipaddress

import pytest

from mesh.serving.push import url_validator


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.5/x",
                                 "http://[::1]/x", "http://169.254.169.254/latest", "http://[::ffff:127.0.0.1]/x",
                                 "ftp://8.8.8.8/x", "not a url", "http://0.0.0.0/x"])
async def test_private_loopback_and_odd_urls_are_refused_by_default(url):
    assert await url_validator([])(url) is False


async def test_a_public_address_is_accepted_and_an_allowed_network_lets_loopback_in():
    assert await url_validator([])("https://8.8.8.8/hook") is True
    allowed = url_validator([ipaddress.ip_network("127.0.0.0/8")])
    assert await allowed("http://127.0.0.1:9/hook") is True
    assert await allowed("http://10.0.0.5/hook") is False
