"""Hardening (issue 19, finding 10): a committed import is reported as committed.

A signal after the commit never says "rolled back": it ends the webhook deliveries, and
the import is reported as the success it is (exit 4 where a webhook was due).  The run
record is final in the import's own transaction, so a process killed right after COMMIT
leaves it 'succeeded', and one killed before leaves the data unchanged.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time

import psycopg
import pytest
from helpers.cli import csvload_cmd

from csvload.history.runs import latest_run

WAIT = 60.0


def products_file(tmp_path, rows: int = 50):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\n" + "".join(f"S-{i},n{i}\n" for i in range(rows)))
    return path


def count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM products").fetchone()[0]


def shown_status(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return latest_run(conn).status


class SilentReceiver:
    """An HTTP server on 127.0.0.1 that reads a request and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.got_request = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            conn.settimeout(WAIT)
            try:
                if conn.recv(65536):
                    self.got_request.set()
            except OSError:
                pass

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    receiver = SilentReceiver()
    yield receiver
    receiver.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_during_webhook_delivery_reports_the_commit(products, tmp_path, silent, signum):
    proc = subprocess.Popen(
        csvload_cmd("import", str(products_file(tmp_path)), "--dsn", products, "--json",
                    "--webhook", silent.url, "--webhook-timeout", "30"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert silent.got_request.wait(WAIT), "the webhook was never sent"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    assert proc.returncode == 4, err
    summary = json.loads(out)
    assert summary["status"] == "succeeded"
    assert summary["webhooks"][0]["status"] == "failed"
    assert "during the delivery" in summary["webhooks"][0]["error"]
    assert "rolled back" not in err and "Aborted" not in err and "Traceback" not in err
    assert "the import itself was committed" in err
    assert count(products) == 50
    assert shown_status(products) == "succeeded"


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting until {what}")


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
def test_run_record_and_data_agree_when_stopped_at_the_commit(products, tmp_path, how):
    """Hold the run's row locked while the import reaches its end, so that whichever write
    of the final record comes first waits, then stop the process there.  Before the fix
    the data was committed first and the record, written afterwards, stayed 'running'
    (shown 'interrupted'), or SIGTERM printed "rolled back" over committed data."""
    path = products_file(tmp_path)
    with psycopg.connect(products, autocommit=True) as admin:
        # A filled table: filling an empty one takes ACCESS EXCLUSIVE, which the counts
        # below would wait for.
        admin.execute("INSERT INTO products (sku, name) VALUES ('PRE', 'p')")
        # Keep the import out of products until its run row is locked.
        gate = psycopg.connect(products)
        gate.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
        proc = subprocess.Popen(
            csvload_cmd("import", str(path), "--dsn", products, "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            _wait_until(
                lambda: admin.execute("SELECT count(*) FROM csvload_runs").fetchone()[0] == 1
                if admin.execute("SELECT to_regclass('csvload_runs')").fetchone()[0] else False,
                "the run is recorded",
            )
            holder = psycopg.connect(products)
            holder.execute("SELECT 1 FROM csvload_runs FOR UPDATE")
            gate.rollback()  # let the import write
            _wait_until(
                lambda: count(products) == 51 or admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'csvload'"
                    " AND wait_event_type = 'Lock' AND query LIKE '%%\"status\" = %%'"
                ).fetchone()[0] > 0,
                "the import ends",
            )
            if how == "kill-9":
                proc.kill()
            else:
                proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            holder.rollback()
            out, err = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
            gate.close()
    _wait_until(
        lambda: shown_status(products) != "running", "the run's status is final"
    )
    committed = count(products) == 51
    status = shown_status(products)
    assert status == ("succeeded" if committed else "interrupted"), (committed, status, err)
    if how == "sigterm":
        if committed:
            assert proc.returncode == 0 and json.loads(out)["status"] == "succeeded", err
        else:
            assert proc.returncode == 143 and "rolled back" in err, err
    else:
        assert count(products) in (1, 51)


def test_run_record_is_final_inside_the_import_transaction(products, tmp_path):
    """Library level: the row says succeeded as soon as the transaction commits, before
    RunRecorder.finish() has run."""
    from csvload.history.recorder import RunRecorder
    from csvload.load.loader import ImportOptions, import_source
    from csvload.read.source import Source, SourceOptions

    path = products_file(tmp_path, 3)
    recorder = RunRecorder.start(products, file=str(path))
    try:
        with Source(SourceOptions(str(path))) as source, psycopg.connect(products) as conn:
            import_source(conn, source, ImportOptions(), before_commit=recorder.finish_within)
        assert shown_status(products) == "succeeded"
        with psycopg.connect(products) as conn:
            assert conn.execute("SELECT inserted FROM csvload_runs").fetchone() == (3,)
    finally:
        recorder.close()
