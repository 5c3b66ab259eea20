"""Federation between two instances, with plain `requests` and PyJWT: organization beta on
instance B registered acme (instance A) as a partner by issuer alone (B discovered A's metadata
over HTTPS). A token acme issues with audience = beta's issuer is verified at B's
/federation/verify, exchanged at B's token endpoint with the JWT bearer grant (RFC 7523 §2.1) and
with token exchange (RFC 8693), and every assertion is single-use."""

import json

import jwt
import requests
from jwt import PyJWKClient

from common import CA_FILE, Reporter, b64url, expect, forge, jwt_parts, load_fixtures, ssl_context

fx = load_fixtures()
r = Reporter("python/federation")
acme, globex, beta = fx["orgs"]["acme"], fx["orgs"]["globex"], fx["orgs"]["beta"]
agents = fx["agents"]
http = requests.Session()
http.verify = CA_FILE
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AT_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def token(agent_name, org, **params):
    a = agents[agent_name]
    resp = http.post(f"{org['issuer']}/oauth2/token", auth=(a["client_id"], a["client_secret"]),
                     data={"grant_type": "client_credentials", **params}, timeout=30)
    expect(resp.status_code == 200, f"token request {resp.status_code} {resp.text}")
    return resp.json()


def for_beta(agent_name="basic", org=acme):
    return token(agent_name, org, audience=beta["issuer"])["access_token"]


beta_bearer = token("beta", beta)["access_token"]


def verify(assertion, bearer=beta_bearer):
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return http.post(f"{beta['issuer']}/federation/verify", json={"assertion": assertion}, headers=headers, timeout=30)


def exchange(data):
    return http.post(f"{beta['issuer']}/oauth2/token", data=data, timeout=30)


def partner_registered():
    p = fx["partner"]
    expect(p["issuer"] == acme["issuer"], p)
    expect(p.get("jwks_uri") == f"{acme['issuer']}/jwks.json", f"discovered jwks_uri {p.get('jwks_uri')}")


r.check("beta registered acme by issuer alone; B discovered its jwks_uri over HTTPS", partner_registered)

t1 = for_beta()


def audience_is_beta():
    expect(jwt_parts(t1)[1]["aud"] == beta["issuer"], jwt_parts(t1)[1]["aud"])


r.check("acme issues a token with audience = beta's issuer", audience_is_beta)


def verified():
    resp = verify(t1)
    j = resp.json()
    expect(resp.status_code == 200 and j.get("valid") is True, f"{resp.status_code} {j}")
    expect(j["partner"]["issuer"] == acme["issuer"], j["partner"])
    expect(j["claims"]["sub"] == agents["basic"]["client_id"] and j["claims"]["iss"] == acme["issuer"], j["claims"])


r.check("B /federation/verify: valid, partner acme, the original claims", verified)


def spent_at_verify():
    j = verify(t1).json()
    expect(j.get("valid") is False and j.get("error"), j)


r.check("the same assertion verified again: valid false (single-use)", spent_at_verify)


def spent_at_token_endpoint():
    resp = exchange({"grant_type": JWT_BEARER, "assertion": t1})
    expect(resp.status_code == 400 and resp.json()["error"] == "invalid_grant", f"{resp.status_code} {resp.text}")


r.check("an assertion spent at /federation/verify is refused by the JWT bearer grant (invalid_grant)",
        spent_at_token_endpoint)

beta_jwks = PyJWKClient(f"{beta['issuer']}/jwks.json", ssl_context=ssl_context())
t2 = for_beta()
local = {}


def jwt_bearer():
    resp = exchange({"grant_type": JWT_BEARER, "assertion": t2, "scope": "invoices:read"})
    j = resp.json()
    expect(resp.status_code == 200 and j["token_type"].lower() == "bearer", f"{resp.status_code} {j}")
    expect(j.get("scope") == "invoices:read", j)
    t = j["access_token"]
    expect(jwt.get_unverified_header(t).get("typ") == "at+jwt", jwt.get_unverified_header(t))
    c = jwt.decode(t, beta_jwks.get_signing_key_from_jwt(t), algorithms=["ES256", "RS256", "EdDSA"],
                   audience=beta["issuer"], issuer=beta["issuer"])
    expect(c["federated"] == {"iss": acme["issuer"], "sub": agents["basic"]["client_id"]}, c)
    expect(c["sub"] == agents["basic"]["did"] or c["sub"].startswith(acme["issuer"]), f"sub {c['sub']}")
    local["token"] = t


r.check("JWT bearer grant at B: a local at+jwt of beta (PyJWT on B's JWKS), federated claim names acme", jwt_bearer)


def local_token_works():
    t = local["token"]
    resp = http.get(f"{beta['issuer']}/agent-info", headers={"authorization": f"Bearer {t}"}, timeout=30)
    j = resp.json()
    expect(resp.status_code == 200 and j.get("federated", {}).get("iss") == acme["issuer"], f"{resp.status_code} {j}")
    a = agents["beta"]
    i = http.post(f"{beta['issuer']}/oauth2/introspect", auth=(a["client_id"], a["client_secret"]),
                  data={"token": t}, timeout=30).json()
    expect(i["active"] is True and i["iss"] == beta["issuer"], i)


if local:
    r.check("the exchanged token works at B's /agent-info and introspects active", local_token_works)

    def federated_cannot_verify():
        resp = verify(for_beta(), bearer=local["token"])
        expect(resp.status_code == 401, f"{resp.status_code} {resp.text}")

    r.check("a federated identity's token cannot call /federation/verify (401)", federated_cannot_verify)


def replayed_grant():
    resp = exchange({"grant_type": JWT_BEARER, "assertion": t2})
    expect(resp.status_code == 400 and resp.json()["error"] == "invalid_grant", f"{resp.status_code} {resp.text}")


r.check("the exchanged assertion used again: invalid_grant", replayed_grant)


def token_exchange():
    resp = exchange({"grant_type": TOKEN_EXCHANGE, "subject_token": for_beta(), "subject_token_type": AT_TYPE})
    j = resp.json()
    expect(resp.status_code == 200 and j.get("issued_token_type") == AT_TYPE, f"{resp.status_code} {j}")
    c = jwt.decode(j["access_token"], beta_jwks.get_signing_key_from_jwt(j["access_token"]),
                   algorithms=["ES256"], audience=beta["issuer"], issuer=beta["issuer"])
    expect(c["federated"]["iss"] == acme["issuer"], c)


r.check("token exchange (RFC 8693) at B: issued_token_type access_token, a beta token", token_exchange)


def scope_beyond_partner():
    resp = exchange({"grant_type": JWT_BEARER, "assertion": for_beta(), "scope": "orders:read"})
    expect(resp.status_code == 400 and resp.json()["error"] == "invalid_scope", f"{resp.status_code} {resp.text}")


r.check("a scope beyond the partner's allowed_scopes: invalid_scope", scope_beyond_partner)


def refused(what, make):
    def run():
        a = make()
        j = verify(a).json()
        expect(j.get("valid") is False, f"verify: {j}")
        resp = exchange({"grant_type": JWT_BEARER, "assertion": make()})
        expect(resp.status_code == 400 and resp.json()["error"] == "invalid_grant", f"grant: {resp.status_code} {resp.text}")
    r.check(f"{what}: verify says valid false, the grant says invalid_grant", run)


refused("a token of acme whose aud is acme itself (wrong audience)", lambda: token("basic", acme)["access_token"])
refused("a token of globex (not a partner of beta) addressed to beta", lambda: for_beta("globex", globex))
refused("an acme ID token (aud = the client, typ JWT)", lambda: token("basic", acme, scope="openid")["id_token"])


def tampered():
    h, p, s = jwt_parts(for_beta())
    return forge(h, {**p, "scope": "invoices:read admin"}, s)


refused("an assertion with a tampered payload", tampered)
refused('an assertion with alg "none"', lambda: forge({**jwt_parts(for_beta())[0], "alg": "none"}, jwt_parts(for_beta())[1]))


def hs256_forgery():
    import hashlib
    import hmac
    h, p, _ = jwt_parts(for_beta())
    keys = http.get(f"{acme['issuer']}/jwks.json", timeout=30).json()["keys"]
    unsigned = forge({**h, "alg": "HS256"}, p)[:-1]
    secret = json.dumps(next(k for k in keys if k["kid"] == h["kid"])).encode()
    return f"{unsigned}.{b64url(hmac.new(secret, unsigned.encode(), hashlib.sha256).digest())}"


refused("an assertion re-signed HS256 with the partner's public JWK", hs256_forgery)


def no_bearer():
    resp = verify(for_beta(), bearer=None)
    expect(resp.status_code == 401 and resp.headers.get("www-authenticate", "").lower().startswith("bearer"),
           f"{resp.status_code} {resp.headers.get('www-authenticate')}")


r.check("/federation/verify without a bearer token: 401 with a Bearer challenge", no_bearer)

r.done()
