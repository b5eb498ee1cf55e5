"""service/security/keys.py: API keys parsed, identified by label or digest, held only as digests."""
from __future__ import annotations

import pytest

from service.security.keys import ApiKeys, KeyConfigError


def test_keys_are_identified_by_label_or_digest_prefix_and_held_only_as_digests():
    keys = ApiKeys(["newsroom:s3cret-one", "plain-key-two", " "])
    assert keys.required
    assert keys.identify("s3cret-one") == "newsroom"
    plain_id = keys.identify("plain-key-two")
    assert plain_id is not None and plain_id.startswith("key-") and len(plain_id) == 12
    assert keys.ids == ["newsroom", plain_id]
    for wrong in (None, "", "s3cret", "newsroom:s3cret-one", "S3CRET-ONE"):
        assert keys.identify(wrong) is None
    held = repr(keys) + repr(vars(keys))
    assert "s3cret-one" not in held and "plain-key-two" not in held


def test_a_colon_inside_a_key_that_is_not_a_label_stays_part_of_the_key():
    keys = ApiKeys(["abc/def:ghi"])  # '/' is not allowed in a label, so this is one key
    assert keys.identify("abc/def:ghi") is not None
    assert keys.identify("ghi") is None


def test_no_keys_means_open_and_duplicate_ids_are_refused():
    assert not ApiKeys([]).required and ApiKeys([]).identify("anything") is None
    with pytest.raises(KeyConfigError, match="'team'"):
        ApiKeys(["team:one", "team:two"])


def test_keys_file_lines_comments_and_settings_list_are_combined(tmp_path):
    path = tmp_path / "keys"
    path.write_text("# the newsroom's key\nnewsroom:from-file\n\n  other-from-file  \n")
    keys = ApiKeys.from_settings("env:from-env", path)
    assert keys.identify("from-env") == "env"
    assert keys.identify("from-file") == "newsroom"
    assert keys.identify("other-from-file") is not None
    assert len(keys.ids) == 3
    with pytest.raises(KeyConfigError, match="cannot read"):
        ApiKeys.from_settings("", tmp_path / "missing")
