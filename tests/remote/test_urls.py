"""read/remote/urls.py: which paths are URLs, and a URL as it may be shown (redacted)."""

from __future__ import annotations

import pytest

from csvload.read.remote.urls import has_credentials, is_remote, local_name, redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://feeds.example/x.csv", "https://feeds.example/x.csv"),
        ("https://me:pw@feeds.example:8443/x.csv", "https://***@feeds.example:8443/x.csv"),
        ("https://tokenonly@feeds.example/x.csv", "https://***@feeds.example/x.csv"),
        (
            "https://s3.example/b/x.csv?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab&versionId=3",
            "https://s3.example/b/x.csv?X-Amz-Credential=***&X-Amz-Signature=***&versionId=3",
        ),
        ("http://h/x?api_key=1&sig=2&page=2&flag", "http://h/x?api_key=***&sig=***&page=2&flag"),
        ("https://h/x.csv#access_token=abc", "https://h/x.csv"),
        ("sftp://shop@files.example/out/x.csv", "sftp://shop@files.example/out/x.csv"),
        ("sftp://shop:pw@files.example:2222/x.csv", "sftp://shop:***@files.example:2222/x.csv"),
        ("https://u:p@[::1]:8080/x", "https://***@[::1]:8080/x"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown
    assert redact(shown) == shown  # redacting twice changes nothing


def test_what_is_a_url_and_its_local_name():
    assert is_remote("HTTPS://h/x") and is_remote("sftp://u@h/x") and is_remote("http://h")
    assert not is_remote("-") and not is_remote("data/x.csv") and not is_remote("ftp://h/x")
    assert not is_remote("C:/x.csv") and not is_remote("file:///x.csv")
    assert local_name("https://h/a/b/catalogue.csv.gz?token=1") == "catalogue.csv.gz"
    assert local_name("https://h/") == "feed"
    assert has_credentials("https://h/x?token=1") and has_credentials("sftp://u:p@h/x")
    assert not has_credentials("sftp://u@h/x") and not has_credentials("https://h/x?page=1")
