"""Protocol details a library hides, checked with plain `requests` (the checks the OpenID
Foundation suite makes on every token and userinfo response): RFC 6749 §5.1 cache headers and
JSON, §5.2 error responses and status codes, RFC 6750 §2 the three ways to present a bearer token
and §3 its challenges, RFC 8414 §3 metadata fetched at the inserted well-known path."""

import requests

from common import CA_FILE, Reporter, expect, load_fixtures

fx = load_fixtures()
r = Reporter("python/requests")
acme = fx["orgs"]["acme"]
ISS = acme["issuer"]
agent = fx["agents"]["basic"]
AUTH = (agent["client_id"], agent["client_secret"])
http = requests.Session()
http.verify = CA_FILE
TOKEN_URL = f"{ISS}/oauth2/token"


def token_response():
    resp = http.post(TOKEN_URL, auth=AUTH, data={"grant_type": "client_credentials"}, timeout=30)
    expect(resp.status_code == 200, resp.text)
    expect(resp.headers.get("content-type", "").startswith("application/json"), resp.headers.get("content-type"))
    expect("no-store" in resp.headers.get("cache-control", ""), f"Cache-Control {resp.headers.get('cache-control')}")
    j = resp.json()
    expect(j["token_type"] == "Bearer" and isinstance(j["expires_in"], int), j)
    return j["access_token"]


at = r.check("token response: 200 JSON, Cache-Control no-store, token_type Bearer, integer expires_in (RFC 6749 §5.1)",
             token_response)


def oauth_error(data, status, error, auth=AUTH):
    resp = http.post(TOKEN_URL, auth=auth, data=data, timeout=30)
    j = resp.json()
    expect(resp.status_code == status and j.get("error") == error, f"{resp.status_code} {j}")
    expect("no-store" in resp.headers.get("cache-control", ""), "error responses are not cacheable either")
    return resp


r.check("no grant_type: 400 invalid_request (RFC 6749 §5.2)", lambda: oauth_error({}, 400, "invalid_request"))
r.check("grant_type=password: 400 unsupported_grant_type",
        lambda: oauth_error({"grant_type": "password", "username": "u", "password": "p"}, 400, "unsupported_grant_type"))


def unknown_client():
    resp = oauth_error({"grant_type": "client_credentials"}, 401, "invalid_client", auth=("no-such-client", "x"))
    expect(resp.headers.get("www-authenticate", "").lower().startswith("basic"), "a Basic challenge after Basic auth")


r.check("unknown client with Basic auth: 401 invalid_client and a Basic challenge (RFC 6749 §5.2)", unknown_client)


def two_methods():
    resp = http.post(TOKEN_URL, auth=AUTH, data={"grant_type": "client_credentials", "client_id": agent["client_id"],
                                                "client_secret": agent["client_secret"]}, timeout=30)
    expect(resp.status_code in (400, 401) and resp.json()["error"] in ("invalid_request", "invalid_client"), resp.text)


r.check("two client authentication methods at once are refused (RFC 6749 §2.3)", two_methods)

r.check("GET on the token endpoint is refused", lambda: expect(
    http.get(TOKEN_URL, auth=AUTH, timeout=30).status_code in (400, 405)))

if at:
    def info_ok(resp):
        expect(resp.status_code == 200 and resp.json()["sub"] == agent["client_id"], f"{resp.status_code} {resp.text}")
        expect(resp.headers.get("content-type", "").startswith("application/json"), resp.headers.get("content-type"))

    r.check("/agent-info GET with an Authorization header (RFC 6750 §2.1)", lambda: info_ok(
        http.get(f"{ISS}/agent-info", headers={"authorization": f"Bearer {at}"}, timeout=30)))
    r.check("/agent-info POST with the token in the form body (RFC 6750 §2.2)", lambda: info_ok(
        http.post(f"{ISS}/agent-info", data={"access_token": at}, timeout=30)))

    def no_token():
        resp = http.get(f"{ISS}/agent-info", timeout=30)
        challenge = resp.headers.get("www-authenticate", "")
        expect(resp.status_code == 401 and challenge.lower().startswith("bearer"), f"{resp.status_code} {challenge!r}")
        expect("error=" not in challenge, f"no error code without credentials (RFC 6750 §3.1): {challenge!r}")

    r.check("/agent-info without a token: 401, a Bearer challenge without an error code (RFC 6750 §3.1)", no_token)

    def scheme_case():
        resp = http.get(f"{ISS}/agent-info", headers={"authorization": f"bearer {at}"}, timeout=30)
        expect(resp.status_code == 200, f"{resp.status_code} {resp.text}")

    r.check("the auth scheme is case-insensitive (RFC 7235 §2.1: 'bearer')", scheme_case)


def rfc8414_paths():
    for org in fx["orgs"].values():
        issuer = org["issuer"]
        origin, path = issuer.split("/orgs/", 1)[0], "/orgs/" + issuer.split("/orgs/", 1)[1]
        m = http.get(f"{origin}/.well-known/oauth-authorization-server{path}", timeout=30)
        o = http.get(f"{issuer}/.well-known/openid-configuration", timeout=30)
        expect(m.status_code == 200 and o.status_code == 200, f"{m.status_code} {o.status_code}")
        expect(m.json()["issuer"] == issuer == o.json()["issuer"], "issuer equals the URL it was fetched for")
        expect(m.json()["token_endpoint"] == o.json()["token_endpoint"], "both documents agree")


r.check("RFC 8414 §3.1 metadata at /.well-known/oauth-authorization-server{path}, same issuer as OIDC discovery",
        rfc8414_paths)

r.done()
