"""Shared helpers of the Python conformance checks: the fixture file written by fixtures.py, a
TLS context trusting the run's private CA, and the PASS/FAIL reporter `conformance/run` counts.

Output protocol (one line per check, counted by conformance/run):
    PASS <client> | <what>
    FAIL <client> | <what> | <why>
"""

import base64
import json
import os
import ssl
import sys
import time
import traceback

FIXTURES_PATH = os.environ.get("CONFORMANCE_FIXTURES", "")
CA_FILE = os.environ.get("CONFORMANCE_CA", "")


def load_fixtures():
    with open(FIXTURES_PATH, encoding="utf-8") as f:
        return json.load(f)


def ssl_context():
    return ssl.create_default_context(cafile=CA_FILE)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str):
    """(header dict, payload dict, signature b64) of a compact JWS, unverified."""
    h, p, s = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), s


def forge(header: dict, payload: dict, signature: str = "") -> str:
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.{signature}"


class Reporter:
    def __init__(self, client: str):
        self.client = client
        self.failed = 0
        self.passed = 0

    def _line(self, ok: bool, what: str, why: str = ""):
        if ok:
            self.passed += 1
            print(f"PASS {self.client} | {what}", flush=True)
        else:
            self.failed += 1
            why = " ".join(str(why).split())[:600]
            print(f"FAIL {self.client} | {what} | {why}", flush=True)

    def check(self, what: str, fn):
        """Runs fn(); a raised exception (AssertionError included) is a failure. Returns fn's value."""
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - every error is a failed check
            detail = f"{type(e).__name__}: {e}"
            if os.environ.get("CONFORMANCE_VERBOSE"):
                traceback.print_exc()
            self._line(False, what, detail)
            return None
        self._line(True, what)
        return value

    def rejects(self, what: str, fn, *exc_types, test=None):
        """fn() must raise one of exc_types (any Exception when none given), and test(exc) must
        hold when given."""
        types = exc_types or (Exception,)
        try:
            fn()
        except types as e:
            if test is not None and not test(e):
                self._line(False, what, f"rejected, but not as expected: {type(e).__name__}: {e}")
                return e
            self._line(True, f"{what} (rejected: {type(e).__name__}{': ' + e.error if getattr(e, 'error', None) else ''})")
            return e
        except Exception as e:  # noqa: BLE001
            self._line(False, what, f"raised {type(e).__name__}: {e}, expected {[t.__name__ for t in types]}")
            return None
        self._line(False, what, "was accepted")
        return None

    def done(self):
        sys.stdout.flush()
        sys.exit(1 if self.failed else 0)


def expect(cond, msg="expectation failed"):
    if not cond:
        raise AssertionError(msg)


def wait_until(ts: float):
    delay = ts - time.time()
    if delay > 0:
        time.sleep(delay)
