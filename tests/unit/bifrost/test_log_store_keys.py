"""The log-server's record keys: built one by one or a store's worth at once, the same bytes."""

from __future__ import annotations

from bifrost.log_server import keys


def test_data_keys_are_data_key_of_each_offset() -> None:
    lid = (7 << 32) | 3
    assert keys.data_keys(lid, 2**32 - 3, 5) == [keys.data_key(lid, o) for o in range(2**32 - 3, 2**32 + 2)]
    assert keys.data_keys(lid, 1, 0) == []
