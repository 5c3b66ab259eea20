"""What the server must refuse (RFC 8725 §2 attacks, §3 practices; RFC 9068 §4; RFC 7523 §3),
sent with plain `requests` so that nothing but the server decides: every forged, confused,
expired, tampered or foreign token is refused at /agent-info (401 with an RFC 6750
`invalid_token` challenge) and answers {"active": false} at introspection (RFC 7662 §2.2); bad
client assertions are 401 invalid_client at the token endpoint."""

import hashlib
import hmac
import json
import time
import uuid

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common import CA_FILE, Reporter, b64url, expect, forge, jwt_parts, load_fixtures

fx = load_fixtures()
r = Reporter("python/rfc8725-server")
acme, globex = fx["orgs"]["acme"], fx["orgs"]["globex"]
ISS = acme["issuer"]
agents = fx["agents"]
http = requests.Session()
http.verify = CA_FILE


def token(agent_name, org="acme", **params):
    a = agents[agent_name]
    resp = http.post(f"{fx['orgs'][org]['issuer']}/oauth2/token", auth=(a["client_id"], a["client_secret"]),
                     data={"grant_type": "client_credentials", **params}, timeout=30)
    expect(resp.status_code == 200, f"token request {resp.status_code} {resp.text}")
    return resp.json()


def agent_info(t, org=acme):
    return http.get(f"{org['issuer']}/agent-info", headers={"authorization": f"Bearer {t}"}, timeout=30)


def introspect(t, org=acme, as_agent="basic"):
    a = agents[as_agent]
    resp = http.post(f"{org['issuer']}/oauth2/introspect", auth=(a["client_id"], a["client_secret"]),
                     data={"token": t}, timeout=30)
    expect(resp.status_code == 200, f"introspection {resp.status_code} {resp.text}")
    return resp.json()


def refused_everywhere(what, make, org=acme, introspector="basic"):
    """Two checks: /agent-info answers 401 invalid_token; introspection answers active false."""
    try:
        t = make()
    except Exception as e:  # noqa: BLE001
        def fail(e=e):
            raise e
        r.check(f"{what}: building the token", fail)
        return

    def at_agent_info():
        resp = agent_info(t, org)
        challenge = resp.headers.get("www-authenticate", "")
        expect(resp.status_code == 401, f"{resp.status_code} {resp.text[:200]}")
        expect(challenge.lower().startswith("bearer") and 'error="invalid_token"' in challenge, f"challenge {challenge!r}")

    def at_introspection():
        j = introspect(t, org, introspector)
        expect(j == {"active": False}, j)

    r.check(f"{what}: /agent-info 401 invalid_token", at_agent_info)
    r.check(f"{what}: introspection active false", at_introspection)


good = token("basic", scope="openid invoices:read")
AT, ID = good["access_token"], good["id_token"]
H, P, S = jwt_parts(AT)
jwks = http.get(f"{ISS}/jwks.json", timeout=30).json()["keys"]
rsa_jwk = next(k for k in jwks if k["kty"] == "RSA")
ec_jwk = next(k for k in jwks if k["kty"] == "EC")

r.check("control: the genuine token is accepted at /agent-info and introspection", lambda: expect(
    agent_info(AT).status_code == 200 and introspect(AT)["active"] is True))

# RFC 8725 §2.1 / §3.1: alg none, in every spelling, with and without a signature.
for alg in ("none", "None", "NONE"):
    refused_everywhere(f'alg "{alg}", empty signature', lambda alg=alg: forge({**H, "alg": alg}, P))
refused_everywhere('alg "none" keeping the original signature', lambda: forge({**H, "alg": "none"}, P, S))


def hs256(secret: bytes, kid: str):
    unsigned = forge({"alg": "HS256", "typ": "at+jwt", "kid": kid}, P)[:-1]
    return f"{unsigned}.{b64url(hmac.new(secret, unsigned.encode(), hashlib.sha256).digest())}"


def pem_of(jwk):
    key = jwt.algorithms.get_default_algorithms()["RS256" if jwk["kty"] == "RSA" else "ES256"].from_jwk(jwk)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# RFC 8725 §2.1 algorithm substitution: HMAC keyed with the public key.
refused_everywhere("HS256 keyed with the RSA public key (PEM), its kid", lambda: hs256(pem_of(rsa_jwk), rsa_jwk["kid"]))
refused_everywhere("HS256 keyed with the EC public key (PEM), its kid", lambda: hs256(pem_of(ec_jwk), ec_jwk["kid"]))
refused_everywhere("HS256 keyed with the RSA JWK's JSON text", lambda: hs256(json.dumps(rsa_jwk).encode(), rsa_jwk["kid"]))
refused_everywhere('HS256 keyed with the RSA modulus "n"', lambda: hs256(rsa_jwk["n"].encode(), rsa_jwk["kid"]))

# RFC 8725 §3.11 / RFC 9068 §4: explicit typing, no cross-JWT confusion.
refused_everywhere("an ID token presented as an access token (typ JWT)", lambda: ID)


def proof_jwt():
    a = agents["basic"]
    resp = http.post(f"{ISS}/agent-proof", auth=(a["client_id"], a["client_secret"]), data={"aud": ISS}, timeout=30)
    expect(resp.status_code == 200, resp.text)
    return resp.json()["proof"]


refused_everywhere("a proof-of-control JWT presented as an access token (typ agent-proof+jwt)", proof_jwt)

# Keys the attacker controls (RFC 8725 §3.10: never trust keys named by the token itself).
attacker = ec.generate_private_key(ec.SECP256R1())
attacker_pem = attacker.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
attacker_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
now = int(time.time())
claims = {**P, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())}
refused_everywhere("signed by an attacker key, with the genuine kid",
                   lambda: jwt.encode(claims, attacker_pem, "ES256", headers={"typ": "at+jwt", "kid": H["kid"]}))
refused_everywhere("signed by an attacker key embedded as a jwk header",
                   lambda: jwt.encode(claims, attacker_pem, "ES256", headers={"typ": "at+jwt", "jwk": attacker_jwk,
                                                                              "kid": "attacker"}))
refused_everywhere("signed by an attacker key named by a jku header",
                   lambda: jwt.encode(claims, attacker_pem, "ES256", headers={
                       "typ": "at+jwt", "kid": "attacker", "jku": "https://attacker.example/jwks.json"}))

# Integrity and lifetime.
refused_everywhere("payload tampered (scope widened), signature kept",
                   lambda: forge(H, {**P, "scope": "invoices:read payroll:write"}, S))
refused_everywhere("payload tampered (exp extended by a day), signature kept",
                   lambda: forge(H, {**P, "exp": P["exp"] + 86400}, S))
refused_everywhere("signature altered", lambda: f"{AT.rsplit('.', 1)[0]}.{S[:10]}{'A' if S[10] != 'A' else 'B'}{S[11:]}")
refused_everywhere("header tampered (typ removed), signature kept",
                   lambda: forge({k: v for k, v in H.items() if k != "typ"}, P, S))


def expired():
    t = token("short")["access_token"]
    time.sleep(max(0.0, jwt_parts(t)[1]["exp"] - time.time() + 1.1))
    return t


refused_everywhere("an expired access token (ttl 1 s)", expired)
refused_everywhere("a token of an agent revoked after issuance", lambda: fx["revoked_token"])

# Tenancy: a token of one organization at another organization's endpoints.
refused_everywhere("an acme token at globex's endpoints", lambda: AT, org=globex, introspector="globex")


def cross_org_revocation():
    g = agents["globex"]
    t = token("basic")["access_token"]
    resp = http.post(f"{globex['issuer']}/oauth2/revoke", auth=(g["client_id"], g["client_secret"]),
                     data={"token": t}, timeout=30)
    expect(resp.status_code in (200, 400), f"{resp.status_code} {resp.text}")
    expect(introspect(t)["active"] is True, "revocation at another organization must not affect the token")


r.check("revoking an acme token at globex's revocation endpoint leaves it active at acme", cross_org_revocation)

# Client assertions at the token endpoint (RFC 7523 §3, RFC 8725 §3.1, §3.2).
pk = agents["pkjwt"]
TOKEN_URL = f"{ISS}/oauth2/token"
es_pem = open(fx["keys"]["pkjwt_es256_pem"], "rb").read()


def assertion(**over):
    now = int(time.time())
    c = {"iss": pk["client_id"], "sub": pk["client_id"], "aud": TOKEN_URL, "iat": now, "exp": now + 120,
         "jti": str(uuid.uuid4())}
    c.update(over)
    return c


def token_with_assertion(a):
    return http.post(TOKEN_URL, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": a}, timeout=30)


def refused_assertion(what, make):
    def run():
        resp = token_with_assertion(make())
        expect(resp.status_code == 401 and resp.json().get("error") == "invalid_client", f"{resp.status_code} {resp.text}")
    r.check(f"client assertion {what}: 401 invalid_client", run)


r.check("control: a genuine ES256 client assertion is accepted", lambda: expect(token_with_assertion(
    jwt.encode(assertion(), es_pem, "ES256", headers={"kid": fx["keys"]["pkjwt_es256_kid"]})).status_code == 200))
refused_assertion('with alg "none"', lambda: forge({"alg": "none"}, assertion()))
def hs_assertion():
    ec_pub = serialization.load_pem_private_key(es_pem, None).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    unsigned = forge({"alg": "HS256", "kid": fx["keys"]["pkjwt_es256_kid"]}, assertion())[:-1]
    return f"{unsigned}.{b64url(hmac.new(ec_pub, unsigned.encode(), hashlib.sha256).digest())}"


refused_assertion("HS256 keyed with the client's registered public key (PEM)", hs_assertion)
refused_assertion("signed by a key the client never registered",
                  lambda: jwt.encode(assertion(), attacker_pem, "ES256", headers={"kid": fx["keys"]["pkjwt_es256_kid"]}))
refused_assertion("with a wrong aud", lambda: jwt.encode(assertion(aud="https://elsewhere.example/token"), es_pem, "ES256"))
refused_assertion("with iss different from sub", lambda: jwt.encode(assertion(iss="someone-else"), es_pem, "ES256"))
refused_assertion("without jti", lambda: jwt.encode({k: v for k, v in assertion().items() if k != "jti"}, es_pem, "ES256"))
refused_assertion("expired", lambda: jwt.encode(assertion(iat=now - 7200, exp=now - 3600), es_pem, "ES256"))


def replayed():
    a = jwt.encode(assertion(), es_pem, "ES256", headers={"kid": fx["keys"]["pkjwt_es256_kid"]})
    first = token_with_assertion(a)
    expect(first.status_code == 200, f"first use {first.status_code} {first.text}")
    return a


refused_assertion("replayed (second use of the same jti)", replayed)
refused_assertion("that is really an access token (typ at+jwt)", lambda: AT)

r.done()
