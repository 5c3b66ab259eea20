"""Authlib as an OAuth 2.0 client and resource server: the client credentials grant with
client_secret_basic, client_secret_post (requests OAuth2Session, httpx AsyncOAuth2Client) and
private_key_jwt (authlib.oauth2.rfc7523.PrivateKeyJWT), introspection, revocation, /agent-info,
replayed and mis-addressed client assertions, and RFC 9068 validation of the access tokens with
authlib.oauth2.rfc9068.JWTBearerTokenValidator."""

import asyncio

import requests
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc.jwk import ECKey

from common import CA_FILE, Reporter, expect, load_fixtures, ssl_context

fx = load_fixtures()
r = Reporter("python/authlib")
acme = fx["orgs"]["acme"]
ISS = acme["issuer"]
meta = requests.get(f"{ISS}/.well-known/openid-configuration", verify=CA_FILE, timeout=30).json()
TOKEN_URL = meta["token_endpoint"]
INTROSPECT_URL = meta["introspection_endpoint"]
REVOKE_URL = meta["revocation_endpoint"]
USERINFO_URL = meta["userinfo_endpoint"]
basic_agent, post_agent, pk_agent = fx["agents"]["basic"], fx["agents"]["post"], fx["agents"]["pkjwt"]


def session(agent, method, **kw):
    s = OAuth2Session(agent["client_id"], agent["client_secret"], token_endpoint_auth_method=method,
                      revocation_endpoint_auth_method=method, **kw)
    s.verify = CA_FILE
    return s


def fetch(s, **kw):
    return s.fetch_token(TOKEN_URL, grant_type="client_credentials", **kw)


# --- client authentication at the token endpoint ---

def secret_basic():
    s = session(basic_agent, "client_secret_basic", scope="openid invoices:read")
    t = fetch(s)
    expect(t["token_type"].lower() == "bearer" and t.get("id_token"), t)
    expect(t["scope"] == "openid invoices:read", t)
    return s, t


basic_session, basic_token = r.check("OAuth2Session client_secret_basic: client_credentials token (+ ID token with openid)",
                                     secret_basic) or (None, None)


def secret_post():
    s = session(post_agent, "client_secret_post")
    captured = {}

    def hook(resp, *args, **kwargs):
        captured["req"] = resp.request  # a hook returning None keeps the response

    s.hooks["response"].append(hook)
    t = fetch(s)
    req = captured["req"]
    expect("authorization" not in {k.lower() for k in req.headers}, "no Authorization header with client_secret_post")
    expect(b"client_secret=" in (req.body if isinstance(req.body, bytes) else req.body.encode()), "secret in the body")
    expect(t["access_token"], t)


r.check("OAuth2Session client_secret_post: client_credentials token (secret in the form body)", secret_post)


async def async_basic():
    async with AsyncOAuth2Client(basic_agent["client_id"], basic_agent["client_secret"],
                                 token_endpoint_auth_method="client_secret_basic", verify=ssl_context()) as c:
        t = await c.fetch_token(TOKEN_URL, grant_type="client_credentials")
        expect(t["access_token"] and "id_token" not in t, t)
        info = await c.get(USERINFO_URL)
        expect(info.status_code == 200 and info.json()["sub"] == basic_agent["client_id"], info.text)


r.check("AsyncOAuth2Client (httpx) client_secret_basic: token, then /agent-info with it", lambda: asyncio.run(async_basic()))

invalid_client = lambda e: e.error == "invalid_client"  # noqa: E731
r.rejects("a wrong client secret (invalid_client)",
          lambda: fetch(session({**basic_agent, "client_secret": "wrong"}, "client_secret_basic")), OAuthError,
          test=invalid_client)


def pk_session(token_endpoint=TOKEN_URL, **claims):
    key = ECKey.import_key(open(fx["keys"]["pkjwt_es256_pem"], "rb").read())
    s = OAuth2Session(pk_agent["client_id"], key, token_endpoint_auth_method="private_key_jwt",
                      revocation_endpoint_auth_method="private_key_jwt")
    s.register_client_auth_method(PrivateKeyJWT(token_endpoint, alg="ES256",
                                                headers={"kid": fx["keys"]["pkjwt_es256_kid"]}, claims=claims or None))
    s.verify = CA_FILE
    captured = []

    def hook(resp, *args, **kwargs):
        captured.append(resp.request)

    s.hooks["response"].append(hook)
    return s, captured


def private_key_jwt():
    s, captured = pk_session()
    t = fetch(s, scope="openid invoices:read")
    expect(t["access_token"] and t.get("id_token"), t)
    return s, captured, t


pk = r.check("OAuth2Session private_key_jwt (rfc7523.PrivateKeyJWT, ES256): client_credentials token", private_key_jwt)


def replay():
    _, captured, _ = pk
    req = captured[-1]
    resp = requests.post(req.url, data=req.body, headers={"content-type": req.headers["content-type"]},
                         verify=CA_FILE, timeout=30)
    expect(resp.status_code == 401 and resp.json().get("error") == "invalid_client", f"{resp.status_code} {resp.text}")


if pk:
    r.check("the same client assertion replayed: 401 invalid_client (jti is single-use)", replay)

r.rejects("a client assertion whose aud is another server's token endpoint (invalid_client)",
          lambda: fetch(pk_session("https://elsewhere.example/oauth2/token")[0]), OAuthError, test=invalid_client)
r.rejects("a client assertion that expired an hour ago (invalid_client)",
          lambda: fetch(pk_session(exp=1_000_000_000)[0]), OAuthError, test=invalid_client)


# --- introspection, /agent-info, revocation ---

def introspect_active():
    s, _, t = pk
    resp = s.introspect_token(INTROSPECT_URL, token=basic_token["access_token"])
    j = resp.json()
    expect(resp.status_code == 200 and j["active"] is True and j["client_id"] == basic_agent["client_id"], resp.text)
    expect(j["iss"] == ISS and j["token_type"].lower() == "bearer", j)
    resp = basic_session.introspect_token(INTROSPECT_URL, token=t["access_token"])
    expect(resp.json()["active"] is True, "introspection with client_secret_basic of the other client's token")


if pk and basic_session:
    r.check("introspect_token (RFC 7662): active, with private_key_jwt and with client_secret_basic", introspect_active)


def agent_info():
    resp = basic_session.get(USERINFO_URL)  # the session sends its token as a Bearer header
    j = resp.json()
    expect(resp.status_code == 200, resp.text)
    expect(j["sub"] == basic_agent["client_id"] and j["did"] == basic_agent["did"], j)
    resp = basic_session.post(USERINFO_URL)
    expect(resp.status_code == 200 and resp.json()["sub"] == basic_agent["client_id"], f"POST: {resp.text}")


if basic_session:
    r.check("/agent-info (GET and POST) with the session's bearer token", agent_info)


def revoke():
    s = session(basic_agent, "client_secret_basic")
    t = fetch(s)
    resp = s.revoke_token(REVOKE_URL, token=t["access_token"], token_type_hint="access_token")
    expect(resp.status_code == 200, f"revoke {resp.status_code} {resp.text}")
    j = s.introspect_token(INTROSPECT_URL, token=t["access_token"]).json()
    expect(j == {"active": False}, f"after revocation: {j}")
    info = s.get(USERINFO_URL)
    expect(info.status_code == 401 and "invalid_token" in info.headers.get("www-authenticate", ""),
           f"/agent-info after revocation: {info.status_code} {info.headers.get('www-authenticate')}")
    resp = s.revoke_token(REVOKE_URL, token="not-a-token")
    expect(resp.status_code == 200, f"revoking garbage must answer 200 (RFC 7009 §2.2): {resp.status_code}")


r.check("revoke_token (RFC 7009): then inactive at introspection, 401 invalid_token at /agent-info", revoke)


def revoke_foreign():
    s = session(post_agent, "client_secret_post")
    other = fetch(session(basic_agent, "client_secret_basic"))["access_token"]
    resp = s.revoke_token(REVOKE_URL, token=other)
    # RFC 7009 §2.1: the server verifies the token was issued to the client making the request.
    expect(resp.status_code in (200, 400), f"{resp.status_code} {resp.text}")
    j = s.introspect_token(INTROSPECT_URL, token=other).json()
    expect(j["active"] is True, "another client's token must stay active")


r.check("a client cannot revoke another client's token (RFC 7009 §2.1)", revoke_foreign)

r.check("the revoked agent's token (taken before revocation) introspects inactive",
        lambda: expect(basic_session.introspect_token(INTROSPECT_URL, token=fx["revoked_token"]).json() == {"active": False}))


# --- authlib as an RFC 9068 resource server ---

class Validator(JWTBearerTokenValidator):
    def get_jwks(self):
        return requests.get(meta["jwks_uri"], verify=CA_FILE, timeout=30).json()


def rs_validate(token, resource=ISS):
    v = Validator(issuer=ISS, resource_server=resource)
    claims = v.authenticate_token(token)
    v.validate_token(claims, scopes=None, request=None)
    return claims


def rs_accepts():
    # Not EdDSA: joserfc (under authlib) refuses the polymorphic "EdDSA" by default as "not
    # recommended" (RFC 9864 deprecates it for "Ed25519"); PyJWT checks the EdDSA tokens.
    for name in ("basic", "rs256"):
        t = fetch(session(fx["agents"][name], "client_secret_basic"))["access_token"]
        c = rs_validate(t)
        expect(c["client_id"] == fx["agents"][name]["client_id"], c)


r.check("rfc9068.JWTBearerTokenValidator accepts ES256 and RS256 access tokens", rs_accepts)
if basic_token:
    r.rejects("rfc9068.JWTBearerTokenValidator refuses the ID token (typ JWT, not at+jwt)",
              lambda: rs_validate(basic_token["id_token"], resource=basic_agent["client_id"]), InvalidTokenError)
    r.rejects("rfc9068.JWTBearerTokenValidator refuses a token for another resource server (aud)",
              lambda: rs_validate(basic_token["access_token"], resource="https://api.example/other"), InvalidTokenError)

r.done()
