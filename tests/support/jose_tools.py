"""Just enough JOSE for the test IdP: an RSA JWK, RS256 signing and unverified token parts.

Built on ``cryptography`` (a dependency of Authlib in every version we allow) rather than
joserfc, so that a test can forge exactly the token it wants, ``alg: none`` included.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

JWK = dict[str, str]


def b64url(data: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_to_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _b64_to_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def generate_rsa_jwk(kid: str | None = None) -> JWK:
    """Generate a 2048-bit RSA private key as an RS256 signing JWK."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    public = numbers.public_numbers
    return {
        "kty": "RSA", "kid": kid or uuid.uuid4().hex, "alg": "RS256", "use": "sig",
        "n": _int_to_b64(public.n), "e": _int_to_b64(public.e), "d": _int_to_b64(numbers.d),
        "p": _int_to_b64(numbers.p), "q": _int_to_b64(numbers.q),
        "dp": _int_to_b64(numbers.dmp1), "dq": _int_to_b64(numbers.dmq1),
        "qi": _int_to_b64(numbers.iqmp),
    }


def public_jwk(jwk: JWK) -> JWK:
    """Return the public half of an RSA JWK."""
    return {name: jwk[name] for name in ("kty", "kid", "alg", "use", "n", "e") if name in jwk}


def _private_key(jwk: JWK) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(_b64_to_int(jwk["e"]), _b64_to_int(jwk["n"]))
    numbers = rsa.RSAPrivateNumbers(
        p=_b64_to_int(jwk["p"]), q=_b64_to_int(jwk["q"]), d=_b64_to_int(jwk["d"]),
        dmp1=_b64_to_int(jwk["dp"]), dmq1=_b64_to_int(jwk["dq"]), iqmp=_b64_to_int(jwk["qi"]),
        public_numbers=public)
    return numbers.private_key()


def _segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def sign_rs256(header: dict[str, Any], claims: dict[str, Any], jwk: JWK) -> str:
    """Return a compact JWS of ``claims`` signed with ``jwk``; the header is used as given."""
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = _private_key(jwk).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def unsigned_jwt(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Return a compact JWT with an empty signature (for ``alg: none``)."""
    return f"{_segment(header)}.{_segment(claims)}."


def split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Return a compact JWT's header, claims and signature segment, without verifying."""
    header, claims, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(claims)), signature
