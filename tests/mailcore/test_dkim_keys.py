"""DKIM keys in the directory bucket: made, stored, read back, TXT record (RFC 6376 §3.6.1)."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization

from mailcore import dkim_keys
from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.directory import Directory


async def test_key_round_trip_and_txt_record(bus: Bus) -> None:
    key = dkim_keys.make_key("Example.ORG")
    assert key.domain == "example.org" and key.record_name == "postern._domainkey.example.org"
    txt = key.txt()
    assert txt.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(txt.split("p=")[1]))
    assert public.key_size == 2048  # type: ignore[union-attr]
    kv = await bus.js.key_value(names.KV_DIRECTORY)
    assert await dkim_keys.load_key(kv, "example.org") is None
    await dkim_keys.store_key(kv, key)
    assert await dkim_keys.load_key(kv, "EXAMPLE.org") == key
    # The directory's readers skip the key's kind: it is no domain, user or alias.
    directory = await Directory.open(bus.js, watch=False)
    assert directory.domains() == []
