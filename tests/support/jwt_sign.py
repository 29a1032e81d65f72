"""Test support: an RSA key pair, its JWKS, and JWTs signed with it (RS256),
made with the `cryptography` package, so that Hindsight's JWT check is
tested against tokens no Rust code produced. No identity provider needed.

usage: jwt_sign.py keygen DIR [--kid K]  writes DIR/key.pem and DIR/jwks.json (kid "test-key")
       jwt_sign.py sign DIR CLAIMS_JSON  prints a token; CLAIMS_JSON may use "exp": "+600"
                 [--kid K] [--alg RS256|HS256|none]
"""
import base64
import json
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def number(n):
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def keygen(directory, kid="test-key"):
    directory = Path(directory)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    public = key.public_key().public_numbers()
    jwks = {"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                      "n": number(public.n), "e": number(public.e)}]}
    (directory / "jwks.json").write_text(json.dumps(jwks))


def sign(directory, claims, kid="test-key", alg="RS256"):
    key = serialization.load_pem_private_key((Path(directory) / "key.pem").read_bytes(), password=None)
    claims = json.loads(claims)
    for name in ("exp", "iat", "nbf"):
        if isinstance(claims.get(name), str) and claims[name][:1] in "+-":
            claims[name] = int(time.time()) + int(claims[name])
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
    if alg == "RS256":
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "HS256":
        import hmac
        import hashlib
        signature = hmac.new(b"guessed-secret", signing_input, hashlib.sha256).digest()
    else:
        signature = b""
    return f"{signing_input.decode()}.{b64(signature)}"


def main(argv):
    if argv[1] == "keygen":
        options = dict(zip(argv[3::2], argv[4::2]))
        keygen(argv[2], kid=options.get("--kid", "test-key"))
        return
    options = dict(zip(argv[4::2], argv[5::2]))
    print(sign(argv[2], argv[3], kid=options.get("--kid", "test-key"), alg=options.get("--alg", "RS256")))


if __name__ == "__main__":
    main(sys.argv)
