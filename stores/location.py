"""Where a store lives: a local folder, or a prefix in object storage given as a URL.

The one place a STORE argument becomes an icechunk Storage (`storage`). URLs:

    s3://BUCKET/PREFIX    AWS S3 or any S3-compatible server. Credentials, region and endpoint come from
                          the standard variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN),
                          AWS_REGION, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP=true (plain http endpoints). Without
                          AWS_ACCESS_KEY_ID the requests are anonymous: enough to read a public bucket.
    gs://BUCKET/PREFIX    Google Cloud Storage, credentials from the environment (GOOGLE_APPLICATION_CREDENTIALS).
    az://CONTAINER/PREFIX Azure Blob Storage; the account from AZURE_STORAGE_ACCOUNT_NAME, credentials from
                          the environment (AZURE_STORAGE_ACCOUNT_KEY, ...).

Object storage has no file locks: commits there rely on icechunk's conflict detection (a commit whose
branch moved meanwhile rebases, see FrameStore.commit) instead of stores/lock.py.
"""
from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import icechunk as ic

from stores.errors import StoreError
from stores.files import storage_errors

URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
SCHEMES = ("s3", "gs", "az")
CONNECT_TIMEOUT_S = 5.0


def is_url(store) -> bool:
    """True when `store` (str or Path) is written as SCHEME://... rather than a local path."""
    return bool(URL_RE.match(str(store)))


@dataclass(frozen=True)
class ObjectLocation:
    """A store in object storage: `scheme` (s3 | gs | az), `bucket` (container for az), `prefix` (no
    leading or trailing '/'); `url` is the canonical text used in messages and commit metadata."""
    scheme: str
    bucket: str
    prefix: str

    @property
    def url(self) -> str:
        """'SCHEME://BUCKET/PREFIX'."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def __str__(self) -> str:
        return self.url

    def storage(self) -> ic.Storage:
        """The icechunk Storage of this prefix, credentials from the environment (module docstring)."""
        if self.scheme == "s3":
            return s3_storage(self.bucket, self.prefix, self.url)
        if self.scheme == "gs":
            return ic.gcs_storage(bucket=self.bucket, prefix=self.prefix, from_env=True)
        account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
        if not account:
            raise StoreError(f"{self.url}: set AZURE_STORAGE_ACCOUNT_NAME to the storage account of container "
                             f"{self.bucket!r}; nothing was written")
        return ic.azure_storage(account=account, container=self.bucket, prefix=self.prefix, from_env=True)


def s3_storage(bucket: str, prefix: str, url: str) -> ic.Storage:
    """S3 storage from the AWS_* variables; anonymous (unsigned) requests when AWS_ACCESS_KEY_ID is unset.
    StoreError naming `url` when the endpoint does not accept connections."""
    env = os.environ.get
    endpoint = env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL")
    allow_http = (env("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")
                  or bool(endpoint and endpoint.startswith("http://")))
    region = env("AWS_REGION") or env("AWS_DEFAULT_REGION")
    target = endpoint or f"https://s3.{region or 'us-east-1'}.amazonaws.com"
    problem = unreachable(target)
    if problem:
        raise StoreError(f"{url}: cannot reach the object store at {target} ({problem}; check "
                         f"AWS_ENDPOINT_URL and the network); nothing was written")
    common = {"bucket": bucket, "prefix": prefix, "region": region,
              "endpoint_url": endpoint, "allow_http": allow_http, "force_path_style": bool(endpoint)}
    if not env("AWS_ACCESS_KEY_ID"):
        return ic.s3_storage(**common, anonymous=True)
    return ic.s3_storage(**common, access_key_id=env("AWS_ACCESS_KEY_ID"),
                         secret_access_key=env("AWS_SECRET_ACCESS_KEY"), session_token=env("AWS_SESSION_TOKEN"))


_REACHED: set[str] = set()


def unreachable(endpoint: str) -> str | None:
    """Why no TCP connection to `endpoint` opens within CONNECT_TIMEOUT_S, or None when one does (icechunk
    itself retries ~30 s before it fails). An endpoint reached once is not tried again in this process."""
    if endpoint in _REACHED:
        return None
    u = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    try:
        socket.create_connection((u.hostname, u.port or (80 if u.scheme == "http" else 443)),
                                 timeout=CONNECT_TIMEOUT_S).close()
    except (OSError, UnicodeError, ValueError) as e:
        return getattr(e, "strerror", None) or str(e) or type(e).__name__
    _REACHED.add(endpoint)
    return None


def check_writable(store) -> None:
    """StoreError when `store` is an s3:// URL and AWS_ACCESS_KEY_ID is unset: anonymous access only reads."""
    loc = locate(store)
    if isinstance(loc, ObjectLocation) and loc.scheme == "s3" and not os.environ.get("AWS_ACCESS_KEY_ID"):
        raise StoreError(f"{loc}: no credentials to write (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                         f"without them s3:// stores are only read, anonymously); nothing was written")


def parse_url(text: str) -> ObjectLocation:
    """'s3://bucket/some/prefix' -> ObjectLocation; StoreError naming the URL for an unknown scheme, no
    bucket or no prefix (a store is a prefix inside a bucket, never a whole bucket)."""
    m = URL_RE.match(text.strip())
    if not m:
        raise StoreError(f"{text}: not a URL (expected SCHEME://BUCKET/PREFIX)")
    scheme, rest = m.group(1).lower(), m.group(2)
    scheme = {"gcs": "gs", "azure": "az"}.get(scheme, scheme)
    if scheme not in SCHEMES:
        raise StoreError(f"{text}: unsupported store URL scheme {m.group(1)!r}; use a local folder or one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}")
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise StoreError(f"{text}: give a bucket and a prefix inside it: {scheme}://BUCKET/PREFIX")
    return ObjectLocation(scheme, bucket, prefix)


def locate(store) -> Path | ObjectLocation:
    """A STORE argument -> its local folder (Path) or its ObjectLocation; StoreError for a bad URL."""
    if isinstance(store, ObjectLocation):
        return store
    return parse_url(str(store)) if is_url(store) else Path(store)


def storage(store) -> ic.Storage:
    """The icechunk Storage of a STORE argument (local folder or URL)."""
    loc = locate(store)
    return ic.local_filesystem_storage(str(loc)) if isinstance(loc, Path) else loc.storage()


@contextmanager
def object_errors(loc: ObjectLocation, outcome: str = "nothing was written"):
    """Inside the block, an icechunk error from the object store becomes one StoreError naming the URL: the
    reason where known (no such bucket, access denied; stores.files.storage_reason), else icechunk's first
    line, with a hint when the request was anonymous."""
    try:
        with storage_errors(loc, outcome):
            yield
    except ic.IcechunkError as e:
        first = next((ln.strip(" x|") for ln in str(e).splitlines() if ln.strip(" x|")), type(e).__name__)
        hint = ""
        if loc.scheme == "s3" and not os.environ.get("AWS_ACCESS_KEY_ID"):
            hint = " (no AWS_ACCESS_KEY_ID: the request was anonymous; does the bucket allow public reads?)"
        raise StoreError(f"{loc}: the object store refused the request: {first}{hint}; {outcome}") from None
