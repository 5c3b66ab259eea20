"""Sets up the fixtures of a conformance run through the admin API of two running agentidp
instances, and writes what the checks need (URLs, client ids, secrets, key files) as JSON.

    fixtures.py OUT_JSON KEY_DIR

Environment: CONFORMANCE_A_URL, CONFORMANCE_B_URL (public base URLs), CONFORMANCE_ADMIN_TOKEN (the
bootstrap token of both), CONFORMANCE_CA (the CA both certificates chain to).

The private_key_jwt agent's keys are generated here with `cryptography` (an EC P-256 key the
Python client signs with, an RSA key the Node client signs with); only their public JWKs are
registered.
"""

import json
import os
import sys

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from common import b64url

A = os.environ["CONFORMANCE_A_URL"].rstrip("/")
B = os.environ["CONFORMANCE_B_URL"].rstrip("/")
TOKEN = os.environ["CONFORMANCE_ADMIN_TOKEN"]
CA = os.environ["CONFORMANCE_CA"]

s = requests.Session()
s.verify = CA
s.headers["authorization"] = f"Bearer {TOKEN}"


def call(method, url, body=None, expect=(200, 201)):
    r = s.request(method, url, json=body, timeout=30)
    if r.status_code not in expect:
        sys.exit(f"fixtures: {method} {url} -> {r.status_code} {r.text}")
    return r.json() if r.content else None


def int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def write_pem(path, key):
    with open(path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.chmod(path, 0o600)


def main():
    out_path, key_dir = sys.argv[1], sys.argv[2]

    # Keys of the private_key_jwt agent.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_pem = os.path.join(key_dir, "pkjwt-es256.pem")
    rsa_pem = os.path.join(key_dir, "pkjwt-rs256.pem")
    write_pem(ec_pem, ec_key)
    write_pem(rsa_pem, rsa_key)
    ecn = ec_key.public_key().public_numbers()
    rsan = rsa_key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "py-es256",
                "x": b64url(ecn.x.to_bytes(32, "big")), "y": b64url(ecn.y.to_bytes(32, "big")),
            },
            {
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "node-rs256",
                "n": int_b64(rsan.n), "e": int_b64(rsan.e),
            },
        ]
    }

    def org(base, slug, name):
        return call("POST", f"{base}/api/v1/orgs", {"slug": slug, "name": name})

    def agent(base, slug, **body):
        return call("POST", f"{base}/api/v1/orgs/{slug}/agents", body)

    acme = org(A, "acme", "Acme Conformance")
    globex = org(A, "globex", "Globex Conformance")
    beta = org(B, "beta", "Beta Conformance")

    scopes = ["invoices:read", "openid"]
    agents = {
        "basic": agent(A, "acme", name="conf-basic", description="client_secret_basic, ES256 access tokens",
                       scopes=scopes),
        "post": agent(A, "acme", name="conf-post", scopes=scopes, token_endpoint_auth_method="client_secret_post"),
        "rs256": agent(A, "acme", name="conf-rs256", scopes=scopes, access_token_signed_response_alg="RS256"),
        "eddsa": agent(A, "acme", name="conf-eddsa", scopes=scopes, access_token_signed_response_alg="EdDSA",
                       id_token_signed_response_alg="EdDSA"),
        "pkjwt": agent(A, "acme", name="conf-pkjwt", scopes=scopes, token_endpoint_auth_method="private_key_jwt",
                       jwks=jwks),
        "short": agent(A, "acme", name="conf-short", scopes=["invoices:read"], access_token_ttl_secs=1),
        "revoked": agent(A, "acme", name="conf-revoked", scopes=["invoices:read"]),
        "globex": agent(A, "globex", name="conf-globex", scopes=["invoices:read", "openid"]),
        "beta": agent(B, "beta", name="conf-beta", scopes=["orders:read"]),
    }

    call("PUT", f"{A}/api/v1/orgs/acme/agents/{agents['basic']['id']}/card", {
        "version": "2.1.0",
        "url": "https://agents.example/billing",
        "skills": [{"id": "invoices", "name": "Invoices", "description": "Reads invoices — “quoted”, ünïcödé",
                    "tags": ["billing", "€"], "examples": ["list unpaid invoices"]}],
        "capabilities": {"streaming": True},
        "default_input_modes": ["application/json", "text/plain"],
    })

    # A token of the agent that is revoked right after: it must stop introspecting as active.
    r = requests.post(f"{A}/orgs/acme/oauth2/token", verify=CA, timeout=30,
                      auth=(agents["revoked"]["client_id"], agents["revoked"]["client_secret"]),
                      data={"grant_type": "client_credentials"})
    if r.status_code != 200:
        sys.exit(f"fixtures: token for the revoked agent -> {r.status_code} {r.text}")
    revoked_token = r.json()["access_token"]
    call("POST", f"{A}/api/v1/orgs/acme/agents/{agents['revoked']['id']}/revoke")

    # Federation: beta (instance B) trusts acme (instance A), discovered from its issuer over HTTPS.
    partner = call("POST", f"{B}/api/v1/orgs/beta/partners",
                   {"issuer": acme["issuer"], "allowed_scopes": ["invoices:read"]})

    fixtures = {
        "a": {"base": A}, "b": {"base": B},
        "orgs": {"acme": acme, "globex": globex, "beta": beta},
        "agents": agents,
        "revoked_token": revoked_token,
        "partner": partner,
        "keys": {"pkjwt_es256_pem": ec_pem, "pkjwt_es256_kid": "py-es256",
                 "pkjwt_rs256_pem": rsa_pem, "pkjwt_rs256_kid": "node-rs256"},
        "schemas_dir": os.environ.get("CONFORMANCE_SCHEMAS", ""),
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(fixtures, f, indent=1)
    os.chmod(out_path, 0o600)


if __name__ == "__main__":
    main()
