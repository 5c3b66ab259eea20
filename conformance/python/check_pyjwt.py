"""PyJWT as a relying party: PyJWKClient on the jwks_uri of discovery and jwt.decode with the
expected algorithm, audience and issuer, for ES256, EdDSA and RS256 access tokens and for ID
tokens; then the rejections RFC 8725 asks of a client (wrong audience or issuer, expired,
tampered, alg none, HS256 keyed with the public key, another organization's keys).

PyJWT has no option to require a `typ`: the typ checks are made by jose (Node) and by
authlib's RFC 9068 validator (check_authlib.py)."""

import hashlib
import hmac
import json
import time

import jwt
import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt import PyJWKClient

from common import CA_FILE, Reporter, b64url, expect, forge, jwt_parts, load_fixtures, ssl_context

fx = load_fixtures()
r = Reporter("python/pyjwt")
acme, globex = fx["orgs"]["acme"], fx["orgs"]["globex"]
ISS = acme["issuer"]
meta = requests.get(f"{ISS}/.well-known/openid-configuration", timeout=30, verify=CA_FILE).json()
jwks_client = PyJWKClient(meta["jwks_uri"], ssl_context=ssl_context())
globex_jwks = PyJWKClient(f"{globex['issuer']}/jwks.json", ssl_context=ssl_context())
ALGS = ["ES256", "RS256", "EdDSA"]


def token(agent_name, org="acme", **params):
    a = fx["agents"][agent_name]
    resp = requests.post(f"{fx['orgs'][org]['issuer']}/oauth2/token", auth=(a["client_id"], a["client_secret"]),
                         data={"grant_type": "client_credentials", **params}, timeout=30, verify=CA_FILE)
    expect(resp.status_code == 200, f"token request {resp.status_code} {resp.text}")
    return resp.json()


def decode_at(t, client=jwks_client, algorithms=None, **kw):
    key = client.get_signing_key_from_jwt(t)
    opts = {"audience": ISS, "issuer": ISS, **kw}
    return jwt.decode(t, key, algorithms=algorithms or ALGS,
                      options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"]}, **opts)


for name, alg in (("basic", "ES256"), ("eddsa", "EdDSA"), ("rs256", "RS256")):
    def ok(name=name, alg=alg):
        t = token(name)["access_token"]
        expect(jwt.get_unverified_header(t)["alg"] == alg, jwt.get_unverified_header(t))
        c = decode_at(t, algorithms=[alg])
        expect(c["sub"] == fx["agents"][name]["client_id"] == c["client_id"], c)
        expect(c["did"] == fx["agents"][name]["did"], c)
    r.check(f"{alg} access token: PyJWKClient + jwt.decode(algorithms=[{alg}], audience, issuer)", ok)

for name, alg in (("basic", "RS256"), ("eddsa", "EdDSA")):
    def id_ok(name=name, alg=alg):
        a = fx["agents"][name]
        t = token(name, scope="openid")["id_token"]
        key = jwks_client.get_signing_key_from_jwt(t)
        c = jwt.decode(t, key, algorithms=[alg], audience=a["client_id"], issuer=ISS,
                       options={"require": ["exp", "iat", "iss", "sub", "aud"]})
        expect(c["sub"] == a["client_id"] and c.get("azp", a["client_id"]) == a["client_id"], c)
    r.check(f"{alg} ID token: jwt.decode with audience = client_id", id_ok)

base = token("basic")
at = base["access_token"]

r.rejects("a wrong audience", lambda: decode_at(at, audience="https://api.example/other"), jwt.InvalidAudienceError)
r.rejects("a wrong issuer (another organization)", lambda: decode_at(at, issuer=globex["issuer"]), jwt.InvalidIssuerError)
r.rejects("an organization's token against another organization's JWKS", lambda: decode_at(at, client=globex_jwks),
          jwt.PyJWKClientError)


def tampered():
    h, p, s = at.split(".")
    claims = json.loads(jwt.utils.base64url_decode(p))
    claims["scope"] = "invoices:read payroll:write"
    return decode_at(f"{h}.{b64url(json.dumps(claims).encode())}.{s}")


r.rejects("a tampered payload (scope widened)", tampered, jwt.InvalidSignatureError)


def alg_none():
    h, p, _ = jwt_parts(at)
    forged = forge({**h, "alg": "none"}, p)
    key = jwks_client.get_signing_key(h["kid"])
    return jwt.decode(forged, key, algorithms=ALGS, audience=ISS, issuer=ISS)


r.rejects('alg "none" (RFC 8725 §3.1)', alg_none, jwt.InvalidAlgorithmError, jwt.InvalidSignatureError)


def hs256_with_public_key():
    rsa = next(k for k in requests.get(meta["jwks_uri"], timeout=30, verify=CA_FILE).json()["keys"] if k["kty"] == "RSA")
    pem = jwt.algorithms.RSAAlgorithm.from_jwk(rsa).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _, p, _ = jwt_parts(at)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": rsa["kid"]}
    unsigned = forge(header, p)[:-1]
    sig = b64url(hmac.new(pem, unsigned.encode(), hashlib.sha256).digest())
    return decode_at(f"{unsigned}.{sig}")


r.rejects("HS256 keyed with the organization's RSA public key (RFC 8725 §2.1)", hs256_with_public_key,
          jwt.InvalidAlgorithmError, jwt.PyJWKClientError, jwt.InvalidSignatureError)


def expired():
    t = token("short")["access_token"]
    exp = jwt.decode(t, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, exp - time.time() + 1.1))
    return decode_at(t)


r.rejects("an expired access token (ttl 1 s, leeway 0)", expired, jwt.ExpiredSignatureError)

r.done()
