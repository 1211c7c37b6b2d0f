"""Feeds in csvload.toml: loading, normalising, the one-line errors, and merging under the
command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.files import write_toml

from csvload.cli.config import CONFIG_FILE, OPTIONS, Feed, load_feed, merge
from csvload.errors import ConfigError, ExitStatus


def error(tmp_path: Path, text: str, feed: str = "shop") -> str:
    """The one-line message load_feed raises for `text` as ./csvload.toml."""
    write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_feed(None, feed, tmp_path)
    assert e.value.exit_status == ExitStatus.USAGE
    message = str(e.value)
    assert "\n" not in message
    return message


# -- loading -----------------------------------------------------------------------------------


def test_a_feed_is_normalised_to_the_shapes_of_the_command_line_options(tmp_path):
    write_toml(
        tmp_path,
        """
        # The shop's nightly export.
        [feeds.shop]
        table = "shop.products"
        key = ["supplier", " sku "]
        preset = "shopify"
        map = { "Product Name" = "name", "Preis (EUR)" = " price " }
        default = { active = true, price = 1.5, stock = 0, since = 2024-01-02, note = "n/a" }
        touch = "changed_at"
        encoding = "latin-1"
        delimiter = "\\t"
        decimal_comma = true
        max_errors = 10
        batch_size = 5000
        missing = "Deactivate"
        max_missing = " 2.5 % "
        scope = { supplier = "acme" }
        active_column = "enabled"
        changes = "out/changes.csv"
        rejects = "/var/tmp/rejects.csv"
        webhook = "https://hooks.example.com/csvload?team=ops"
        """,
    )
    feed = load_feed(None, "shop", tmp_path)
    assert feed == Feed(
        name="shop",
        path=tmp_path / "csvload.toml",
        settings={
            "table": "shop.products",
            "key": ("supplier", "sku"),
            "preset": "shopify",
            "map": (("Product Name", "name"), ("Preis (EUR)", "price")),
            "default": (
                ("active", "true"),
                ("price", "1.5"),
                ("stock", "0"),
                ("since", "2024-01-02"),
                ("note", "n/a"),
            ),
            "touch": "changed_at",
            "encoding": "latin-1",
            "delimiter": "\t",
            "decimal_comma": True,
            "max_errors": 10,
            "batch_size": 5000,
            "missing": "deactivate",
            "max_missing": "2.5%",
            "scope": (("supplier", "acme"),),
            "active_column": "enabled",
            "changes": str(tmp_path / "out" / "changes.csv"),
            "rejects": "/var/tmp/rejects.csv",
            "webhook": ("https://hooks.example.com/csvload?team=ops",),
        },
    )


def test_only_the_keys_the_file_sets_are_in_the_settings(tmp_path):
    write_toml(tmp_path, '[feeds.shop]\ntable = "products"\n')
    assert load_feed(None, "shop", tmp_path).settings == {"table": "products"}


def test_every_documented_option_is_accepted():
    assert set(OPTIONS) == {
        "table", "key", "map", "default", "touch", "encoding", "delimiter", "decimal_comma",
        "max_errors", "missing", "max_missing", "scope", "preset", "webhook",
        "active_column", "changes", "rejects", "batch_size", "mode", "update", "keep", "fill",
        "empty", "min_rows", "max_updated", "max_change", "source", "header", "if_changed",
        "fetch_retries", "ca_file", "identity", "known_hosts", "sheet", "header_row", "no_undo",
    }  # fmt: skip


def test_config_path_is_relative_to_cwd_and_feed_paths_to_the_config_file(tmp_path):
    write_toml(
        tmp_path / "conf",
        """
        [feeds."nightly shop"]
        rejects = "rejects/shop.csv"
        key = "supplier,sku"
        webhook = ["http://127.0.0.1:8080/a", "https://hooks.example.com/b"]
        touch = false
        """,
        "feeds.toml",
    )
    feed = load_feed(Path("conf/feeds.toml"), "nightly shop", tmp_path)
    assert feed.path == tmp_path / "conf" / "feeds.toml"
    assert feed.settings == {
        "rejects": str(tmp_path / "conf" / "rejects" / "shop.csv"),
        "key": ("supplier", "sku"),
        "webhook": ("http://127.0.0.1:8080/a", "https://hooks.example.com/b"),
        "no_touch": True,
    }


def test_other_feeds_are_not_checked_key_by_key(tmp_path):
    write_toml(
        tmp_path,
        """
        [feeds.shop]
        table = "products"

        [feeds.future]
        some_option_of_a_later_csvload = 1
        """,
    )
    assert load_feed(None, "shop", tmp_path).settings == {"table": "products"}


# -- file errors -------------------------------------------------------------------------------


def test_no_csvload_toml_in_the_working_directory(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_feed(None, "shop", tmp_path)
    assert str(e.value) == (
        "csvload.toml: no such file (--feed reads it from the working directory; or give "
        "--config PATH)"
    )
    assert e.value.exit_status == ExitStatus.USAGE


def test_no_such_config_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_feed(Path("etc/feeds.toml"), "shop", tmp_path)
    assert str(e.value) == "etc/feeds.toml: no such file"


def test_config_path_is_a_directory(tmp_path):
    (tmp_path / "etc").mkdir()
    with pytest.raises(ConfigError) as e:
        load_feed(Path("etc"), "shop", tmp_path)
    assert str(e.value) == "etc: is a directory, not a config file"


def test_toml_syntax_error_names_line_and_column(tmp_path):
    message = error(tmp_path, '[feeds.shop]\ntable = "products"\nmax_errors = ten\n')
    assert message == "csvload.toml line 3, column 14: not valid TOML: Invalid value"


def test_toml_syntax_error_at_end_of_document_names_the_last_line(tmp_path):
    message = error(tmp_path, '[feeds.shop]\ntable = "products')
    assert message == (
        "csvload.toml line 2: not valid TOML: Unterminated string (at the end of the file)"
    )


def test_a_key_given_twice_is_a_toml_error(tmp_path):
    message = error(tmp_path, '[feeds.shop]\ntable = "a"\ntable = "b"\n')
    assert message == "csvload.toml line 3, column 12: not valid TOML: Cannot overwrite a value"


def test_bytes_that_are_not_utf8(tmp_path):
    (tmp_path / CONFIG_FILE).write_bytes(b'[feeds.shop]\n# caf\xe9\ntable = "p"\n')
    with pytest.raises(ConfigError) as e:
        load_feed(None, "shop", tmp_path)
    assert str(e.value) == (
        "csvload.toml line 2: bytes that are not valid UTF-8 (a TOML file is UTF-8)"
    )


# -- feed errors -------------------------------------------------------------------------------


def test_unknown_feed_lists_the_known_ones(tmp_path):
    text = '[feeds.shop]\ntable = "a"\n[feeds.supplier]\ntable = "b"\n'
    assert error(tmp_path, text, feed="shpo") == (
        "csvload.toml: no feed 'shpo' (feeds: shop, supplier; did you mean 'shop'?)"
    )
    assert error(tmp_path, text, feed="amazon") == (
        "csvload.toml: no feed 'amazon' (feeds: shop, supplier)"
    )


def test_a_file_without_feeds(tmp_path):
    assert error(tmp_path, "# nothing yet\n") == (
        "csvload.toml: no feed 'shop' (the file has no [feeds.NAME] tables)"
    )


def test_a_table_other_than_feeds(tmp_path):
    assert error(tmp_path, '[feed.shop]\ntable = "products"\n') == (
        "csvload.toml line 1: unknown table or key 'feed' (the file holds [feeds.NAME] tables)"
    )


def test_a_feed_that_is_not_a_table(tmp_path):
    assert error(tmp_path, '[feeds]\nother = {}\nshop = "products"\n') == (
        "csvload.toml line 3: feed 'shop': must be a table of options, not \"products\""
    )


def test_unknown_key_names_file_line_and_key_with_a_suggestion(tmp_path):
    text = """
        [feeds.other]
        tabel = "x"

        [feeds.shop]
        table = "products"
        max-errors = 3
        """
    assert error(tmp_path, text) == (
        "csvload.toml line 6: feed 'shop': unknown key 'max-errors' (did you mean 'max_errors'?)"
    )


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path):
    assert error(tmp_path, "[feeds.shop]\ncolour = 'red'\n") == (
        "csvload.toml line 2: feed 'shop': unknown key 'colour' (keys: active_column, "
        "batch_size, ca_file, changes, decimal_comma, default, delimiter, empty, encoding, "
        "fetch_retries, fill, header, header_row, identity, if_changed, keep, key, known_hosts, "
        "map, max_change, max_errors, max_missing, max_updated, min_rows, missing, mode, "
        "no_undo, preset, rejects, scope, sheet, source, table, touch, update, webhook)"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_errors = -1", "max_errors must be an integer >= 0, not -1"),
        ('max_errors = "ten"', 'max_errors must be an integer >= 0, not "ten"'),
        ("max_errors = true", "max_errors must be an integer >= 0, not true"),
        ("max_errors = 1.0", "max_errors must be an integer >= 0, not 1.0"),
        ("batch_size = 0", "batch_size must be an integer >= 1, not 0"),
        ("table = 5", "table must be a table name, not 5"),
        ('table = "  "', 'table must be a table name, not "  "'),
        ("key = []", "key must be a list of column names, not an array"),
        ("key = {sku = 1}", "key must be a list of column names, not a table"),
        ('key = ["sku", 1]', "key must be a column name, not 1"),
        ('key = ["sku", "sku "]', "key names a column twice"),
        ('key = "sku,"', 'key must be a column name, not ""'),
        ('map = ["Name=name"]', 'map must be a table of "Header" = "column", not an array'),
        ('map = { "Name" = 1 }', "map.Name must be a column name, not 1"),
        ('map = { "Product Name" = "" }', 'map."Product Name" must be a column name, not ""'),
        ('map = { " " = "name" }', "map has an empty header name"),
        ("default = [1]", "default must be a table of column = value, not an array"),
        (
            "default = { tags = [1, 2] }",
            "default.tags must be a string, number, boolean or date, not an array",
        ),
        ('default = { Active = "t", " Active" = "f" }', "default names column 'Active' twice"),
        ("scope = { supplier = {} }", "scope.supplier must be a string, number, boolean or "
         "date, not a table"),
        ("touch = true", "touch must be a column name, or false for none, not true"),
        ('missing = "purge"', 'missing must be one of keep, deactivate, delete, not "purge"'),
        ("max_missing = -1", 'max_missing must be an integer >= 0 or a percentage like "10%", '
         "not -1"),
        ('max_missing = "150%"', 'max_missing must be an integer >= 0 or a percentage like '
         '"10%", not "150%"'),
        ('max_missing = "10"', 'max_missing must be an integer >= 0 or a percentage like '
         '"10%", not "10"'),
        ('preset = "magento"', 'preset must be one of shopify, woocommerce, not "magento"'),
        ('delimiter = ";;"', 'delimiter must be one character other than a quote or a line '
         'break, or "auto", not ";;"'),
        ("delimiter = '\"'", 'delimiter must be one character other than a quote or a line '
         'break, or "auto", not "\\""'),
        ('encoding = "klingon"', 'unknown encoding "klingon" (try utf-8, latin-1, cp1252 or '
         "utf-16)"),
        ('encoding = "hex"', '"hex" is not a text encoding (try utf-8, latin-1, cp1252 or '
         "utf-16)"),
        ('decimal_comma = "yes"', 'decimal_comma must be true or false, not "yes"'),
        ("webhook = 5", "webhook must be a URL or a list of URLs, not 5"),
        ('webhook = ["https://a.example", 5]', "webhook must be a URL or a list of URLs, not 5"),
        ('webhook = "ftp://files.example/x"', "webhook URL ftp://files.example/x: scheme must "
         "be http or https, not 'ftp'"),
        ('webhook = "https:///path"', "webhook URL https:///path: no host (use "
         "http://host/path)"),
        ('rejects = ""', 'rejects must be a file path, not ""'),
        ('changes = "~/changes.csv"', "changes: ~ is not expanded in the config file (give an "
         "absolute path, or one relative to the config file)"),
        ('active_column = ""', 'active_column must be a column name, not ""'),
    ],
)  # fmt: skip
def test_wrong_values_name_file_line_feed_and_key(tmp_path, line, message):
    text = f"# shop\n[feeds.shop]\n# the nightly feed\n{line}\n"
    assert error(tmp_path, text) == f"csvload.toml line 4: feed 'shop': {message}"


def test_the_line_of_a_key_in_a_sub_table_or_a_dotted_key(tmp_path):
    text = """
        [feeds.shop]
        table = "products"

        [feeds.other]
        default.stock = 1

        [feeds.shop.default]
        active = true
        stock = [1]
        """
    assert error(tmp_path, text) == (
        "csvload.toml line 9: feed 'shop': default.stock must be a string, number, boolean "
        "or date, not an array"
    )
    text = """
        [feeds.shop]
        table = "products"
        default.active = true
        default."stock level" = {}
        """
    assert error(tmp_path, text) == (
        "csvload.toml line 4: feed 'shop': default.\"stock level\" must be a string, number, "
        "boolean or date, not a table"
    )


def test_lines_inside_a_multi_line_string_are_not_taken_for_keys(tmp_path):
    text = '''
        [feeds.shop]
        table = """
        max_errors = 1
        """
        max_errors = "x"
        '''
    assert error(tmp_path, text) == (
        "csvload.toml line 5: feed 'shop': max_errors must be an integer >= 0, not \"x\""
    )


def test_a_quoted_feed_name(tmp_path):
    text = """
        [feeds.other]
        batch_size = 0
        [feeds."my shop"]
        batch_size = 0
        """
    assert error(tmp_path, text, feed="my shop") == (
        "csvload.toml line 4: feed 'my shop': batch_size must be an integer >= 1, not 0"
    )


def test_a_feed_written_as_an_inline_table_gets_the_line_of_its_name(tmp_path):
    text = '[feeds]\nshop = { table = "products", batch_size = 0 }\n'
    assert error(tmp_path, text) == (
        "csvload.toml line 2: feed 'shop': batch_size must be an integer >= 1, not 0"
    )


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[feeds.shop]\ntable = "p"\nwebhook_secret = "s3cret"\n',
            "csvload.toml line 3: feed 'shop': webhook_secret is a secret, and secrets are "
            "never read from the config file (set CSVLOAD_WEBHOOK_SECRET in the environment "
            "instead)",
        ),
        (
            '[feeds.shop]\nSecret = "s3cret"\n',
            "csvload.toml line 2: feed 'shop': Secret is a secret, and secrets are never read "
            "from the config file (set CSVLOAD_WEBHOOK_SECRET in the environment instead)",
        ),
        (
            'dsn = "postgresql://u:pw@db/shop"\n[feeds.shop]\ntable = "p"\n',
            "csvload.toml line 1: dsn is a secret, and secrets are never read from the config "
            "file (set DATABASE_URL in the environment instead)",
        ),
        (
            '[feeds.shop]\ndatabase_url = "postgresql://db/shop"\n',
            "csvload.toml line 2: feed 'shop': database_url is a secret, and secrets are never "
            "read from the config file (set DATABASE_URL in the environment instead)",
        ),
        (
            '[feeds.shop]\ntable = "p"\n[feeds.shop.default]\ndb-password = "pw"\n',
            "csvload.toml line 4: feed 'shop': default.db-password is a secret, and secrets "
            "are never read from the config file (set DATABASE_URL in the environment "
            "instead)",
        ),
        (
            # A secret in another feed is refused too: the file is what gets committed.
            '[feeds.shop]\ntable = "p"\n[feeds.other]\npassword = "pw"\n',
            "csvload.toml line 4: feed 'other': password is a secret, and secrets are never "
            "read from the config file (set DATABASE_URL in the environment instead)",
        ),
    ],
)
def test_secrets_are_refused_naming_the_environment_variable(tmp_path, text, message):
    assert error(tmp_path, text) == message


def test_a_header_called_password_may_be_mapped(tmp_path):
    write_toml(tmp_path, '[feeds.shop]\nmap = { "Password" = "pass_hint" }\n')
    assert load_feed(None, "shop", tmp_path).settings == {"map": (("Password", "pass_hint"),)}


def test_a_webhook_url_with_credentials_is_refused_without_echoing_them(tmp_path):
    text = '[feeds.shop]\ntable = "p"\nwebhook = ["https://a.example/ok", "https://ops:hunter2@hooks.example/x?token=abc"]\n'  # noqa: E501
    message = error(tmp_path, text)
    assert message == (
        "csvload.toml line 3: feed 'shop': webhook URL https://hooks.example/x?token=*** has a "
        "user or password in it, and secrets are never read from the config file (set "
        "CSVLOAD_WEBHOOK_URL in the environment instead)"
    )
    assert "hunter2" not in message and "ops" not in message


# -- merging under the command line -------------------------------------------------------------


def test_a_flag_on_the_command_line_wins_over_the_file_and_the_file_over_defaults():
    feed = {"table": "shop_items", "max_errors": 10, "map": (("Nom", "name"),)}
    cli = {"table": "products", "max_errors": 0, "mapping": (), "quiet": False}
    merged = merge(feed, cli, {"max_errors"}, params={"map": "mapping"})
    assert merged == {
        "table": "shop_items",  # the command line's default: the file wins
        "max_errors": 0,  # given on the command line (even as the default value): it wins
        "mapping": (("Nom", "name"),),
        "quiet": False,
    }
    assert cli["table"] == "products"  # the command line's values are not changed


def test_an_explicit_repeatable_option_replaces_the_file_value_whole():
    feed = {"webhook": ("https://a.example/1", "https://a.example/2"), "default": (("a", "1"),)}
    cli = {"webhooks": ("https://b.example/",), "defaults": (("b", "2"),)}
    params = {"webhook": "webhooks", "default": "defaults"}
    assert merge(feed, cli, {"webhooks", "defaults"}, params) == cli
    assert merge(feed, cli, set(), params) == {
        "webhooks": ("https://a.example/1", "https://a.example/2"),
        "defaults": (("a", "1"),),
    }


@pytest.mark.parametrize(
    ("feed", "explicit", "expected"),
    [
        ({"no_touch": True}, set(), {"touch": None, "no_touch": True}),
        ({"no_touch": True}, {"touch"}, {"touch": "changed_at", "no_touch": False}),
        ({"touch": "seen_at"}, set(), {"touch": "seen_at", "no_touch": False}),
        ({"touch": "seen_at"}, {"no_touch"}, {"touch": None, "no_touch": True}),
    ],
)
def test_touch_and_no_touch_are_one_setting(feed, explicit, expected):
    cli = {
        "touch": "changed_at" if "touch" in explicit else None,
        "no_touch": "no_touch" in explicit,
    }
    assert merge(feed, cli, explicit) == expected


def test_a_loaded_feed_merges_into_command_line_values(tmp_path):
    write_toml(tmp_path,
               '[feeds.shop]\ntable = "shop_items"\nkey = "supplier,sku"\ntouch = false\n')
    feed = load_feed(None, "shop", tmp_path)
    cli = {"table": "products", "key": ("sku",), "touch": None, "no_touch": False}
    assert merge(feed.settings, cli, {"table"}) == {
        "table": "products",
        "key": ("supplier", "sku"),
        "touch": None,
        "no_touch": True,
    }
