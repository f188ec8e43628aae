"""Cloud Storage sync against gcp-storage-emulator with the real google-cloud-storage client."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gcs_emulator import gcs_bucket_fixture, gcs_emulator_fixture  # noqa: F401  (fixtures)
from google.cloud import storage
from test_datasets import write_npy_folder

from blueno import BluenoError, datasets
from blueno.cli import main
from blueno.datasets import remote
from blueno.datasets.importing import import_path
from blueno.datasets.manifest import manifest_hash, short_version
from blueno.store import now


def blob(url: str, *parts: str) -> storage.Blob:
    location = remote.parse_url(url)
    return storage.Client(project="blueno-emulator").bucket(location.bucket).blob(location.key(*parts))


def leftovers(workspace) -> list[str]:
    return sorted(p.name for p in workspace.data_dir.rglob("*") if p.name.startswith((".tmp-", ".part-")))


def test_that_import_push_rm_pull_verify_round_trips_byte_identical_files(
    workspace, gcs_bucket, tmp_path, capsys
):
    source = write_npy_folder(tmp_path / "src")
    home = ["--home", str(workspace.root)]
    assert main([*home, "data", "import", str(source), "--name", "pets"]) == 0
    assert main([*home, "data", "push", "pets", "--to", gcs_bucket]) == 0
    assert "uploaded 13 files" in capsys.readouterr().out
    assert main([*home, "data", "remote", "ls", gcs_bucket]) == 0
    ref = capsys.readouterr().out.splitlines()[1].split()[0]
    assert ref.startswith("pets@")
    assert main([*home, "data", "rm", "pets"]) == 0
    assert not (workspace.data_dir / "pets").exists()
    assert main([*home, "data", "pull", f"{gcs_bucket}/pets"]) == 0
    assert "downloaded 13 files" in capsys.readouterr().out
    assert main([*home, "data", "verify", ref]) == 0
    assert "all 13 files match" in capsys.readouterr().out
    pulled = workspace.data_dir / "pets" / ref.split("@")[1]
    for original in source.iterdir():
        assert (pulled / original.name).read_bytes() == original.read_bytes()
    assert leftovers(workspace) == []


def test_that_a_resync_transfers_nothing_and_only_differing_objects_travel(
    workspace, store, gcs_bucket, tmp_path
):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    assert len(remote.push(workspace, store, "pets", gcs_bucket).transferred) == 13
    again = remote.push(workspace, store, "pets", gcs_bucket)
    assert again.transferred == [] and again.skipped == 13
    blob(gcs_bucket, "pets", v.version, "s001.npy").upload_from_string(b"not the array")
    blob(gcs_bucket, "pets", v.version, "s002.npy").delete()
    repaired = remote.push(workspace, store, "pets", gcs_bucket)
    assert sorted(repaired.transferred) == ["s001.npy", "s002.npy"] and repaired.skipped == 11
    assert datasets.resolve(store, workspace, "pets").remote_url == gcs_bucket


def test_that_a_new_version_uploads_only_its_changed_files_and_reuses_the_rest(
    workspace, store, gcs_bucket, tmp_path
):
    source = write_npy_folder(tmp_path / "src")
    first = import_path(workspace, store, source, name="pets").version
    remote.push(workspace, store, first.ref, gcs_bucket)
    np.save(source / "s009.npy", np.full((4, 4), 0.5, np.float32))
    second = import_path(workspace, store, source, name="pets").version
    result = remote.push(workspace, store, second.ref, gcs_bucket)
    assert result.transferred == ["s009.npy"] and len(result.copied) == 12 and result.skipped == 0
    datasets.remove(store, workspace, "pets")
    pulled = remote.pull(workspace, store, f"{gcs_bucket}/pets")
    assert pulled.version == second.version and datasets.verify(workspace, pulled).ok


def test_that_a_corrupted_download_is_detected_and_leaves_nothing_behind(
    workspace, store, gcs_bucket, tmp_path
):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, v.ref, gcs_bucket)
    blob(gcs_bucket, "pets", v.version, "s007.npy").upload_from_string(b"\x93NUMPY flipped")
    datasets.remove(store, workspace, v.ref)
    with pytest.raises(BluenoError, match=r"pets/\w+/s007\.npy is corrupt: .* the manifest says"):
        remote.pull(workspace, store, f"{gcs_bucket}/pets@{v.version}", workers=2)
    assert not (workspace.data_dir / "pets").exists() and leftovers(workspace) == []
    assert datasets.versions(store, workspace) == []


def test_that_prepare_repairs_a_damaged_local_copy_from_the_bucket(workspace, store, gcs_bucket, tmp_path):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, v.ref, gcs_bucket)
    good = (v.path / "s003.npy").read_bytes()
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF
    (v.path / "s003.npy").write_bytes(bytes(damaged))
    (v.path / "s004.npy").unlink()
    report = datasets.verify(workspace, v)
    assert report.changed == ["s003.npy"] and report.missing == ["s004.npy"]
    repaired = datasets.prepare(workspace, store, "pets", [])
    assert repaired.id == v.id and (v.path / "s003.npy").read_bytes() == good
    assert datasets.verify(workspace, repaired).ok


def test_that_a_push_never_overwrites_a_remote_manifest_describing_other_content(
    workspace, store, gcs_bucket, tmp_path
):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    forged = {**v.manifest, "n_samples": 999}
    blob(gcs_bucket, "pets", v.version, "manifest.json").upload_from_string(json.dumps(forged))
    with pytest.raises(BluenoError, match="describes different content .* refusing to overwrite"):
        remote.push(workspace, store, v.ref, gcs_bucket)
    assert json.loads(blob(gcs_bucket, "pets", v.version, "manifest.json").download_as_bytes()) == forged
    with pytest.raises(BluenoError, match="the remote manifest was altered"):
        remote.pull(workspace, store, f"{gcs_bucket}/pets@{v.version}")


def test_that_pull_names_what_exists_when_the_version_does_not(workspace, store, gcs_bucket, tmp_path):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, v.ref, gcs_bucket)
    with pytest.raises(BluenoError, match=rf"no such version .* \(there: pets@{v.version}\)"):
        remote.pull(workspace, store, f"{gcs_bucket}/pets@beef")
    with pytest.raises(BluenoError, match="not a Cloud Storage address"):
        remote.pull(workspace, store, "s3://bucket/pets")


def test_that_finished_run_models_upload_when_a_bucket_is_configured_and_pull_back(
    workspace, store, gcs_bucket
):
    with store.write() as conn:
        run_id = conn.execute(
            "INSERT INTO runs (model, params, dataset, created) VALUES ('mlp', '{}', 'd@1', ?)", (now(),)
        ).lastrowid
    model = workspace.run_dir(run_id) / "model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"keras zip bytes" * 1000)
    assert remote.upload_run_model(workspace, store, run_id) is None  # no bucket configured: nothing to do
    workspace.settings_path.write_text(f'[gcs]\nbucket = "{gcs_bucket}"\n')
    url = remote.upload_run_model(workspace, store, run_id)
    assert url == f"{gcs_bucket}/models/run-{run_id}/model.keras"
    assert store.query_one("SELECT model_url FROM runs WHERE id = ?", (run_id,))["model_url"] == url
    model.unlink()
    assert main(["--home", str(workspace.root), "runs", "pull", str(run_id)]) == 0
    assert model.read_bytes() == b"keras zip bytes" * 1000


def test_that_missing_or_bad_credentials_get_one_clear_message_without_secrets(
    workspace, monkeypatch, tmp_path
):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "nowhere.json"))
    with pytest.raises(BluenoError, match=r"no Google Cloud credentials found.*credentials/gcs\.json"):
        remote.client(workspace)
    secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-not-a-real-key"
    key = workspace.credentials_dir / "gcs.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": secret, "client_email": "a@b.c"}))
    with pytest.raises(BluenoError, match=r"gcs\.json is not a valid service-account key") as caught:
        remote.client(workspace)
    assert secret not in str(caught.value) and "BEGIN" not in str(caught.value)
    workspace.settings_path.write_text('[gcs]\ncredentials = "credentials/other.json"\n')
    with pytest.raises(BluenoError, match=r"names the key .*other\.json, which does not exist"):
        remote.client(workspace)


def test_that_prepare_pulls_a_version_this_workspace_only_knows_from_the_bucket(
    workspace, store, gcs_bucket, tmp_path
):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, v.ref, gcs_bucket)
    datasets.remove(store, workspace, "pets")
    with pytest.raises(BluenoError, match="no dataset named 'pets'"):
        datasets.prepare(workspace, store, v.ref, [])
    workspace.settings_path.write_text(f'[gcs]\nbucket = "{gcs_bucket}"\n')
    chain = [{"transform": "clip", "params": {"low": 0, "high": 0.5}}]
    prepared = datasets.prepare(workspace, store, v.ref, chain)
    assert prepared.name == "pets.clip" and datasets.get(store, workspace, prepared.parent_id).ref == v.ref
    assert datasets.resolve(store, workspace, v.ref).remote_url == gcs_bucket


def test_that_a_bucket_that_does_not_exist_is_named_and_nothing_changes(
    workspace, store, gcs_bucket, tmp_path
):
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    with pytest.raises(BluenoError, match=r"push to gs://no-such-bucket/x/pets/\w+: not found\. Check"):
        remote.push(workspace, store, v.ref, "gs://no-such-bucket/x")
    assert datasets.resolve(store, workspace, v.ref).remote_url is None


def test_that_a_remote_manifest_with_paths_escaping_the_folder_is_refused(workspace, store, gcs_bucket):
    forged = {"format": 1, "kind": "npz", "files": [{"path": "../../evil.txt", "size": 5, "crc32c": "x"}],
              "n_samples": 1, "sample_shape": [], "dtype": "float32", "classes": {"a": 1},
              "class_names": ["a"], "options": {}, "parent": None, "transform": None}
    version = short_version(manifest_hash(forged))
    blob(gcs_bucket, "evil", version, "manifest.json").upload_from_string(json.dumps(forged))
    with pytest.raises(BluenoError, match=r"lists paths outside the dataset folder \('../../evil.txt'\)"):
        remote.pull(workspace, store, f"{gcs_bucket}/evil")
    assert not list(workspace.root.parent.rglob("evil.txt")) and leftovers(workspace) == []


def test_that_every_upload_carries_a_generation_precondition(workspace, store, gcs_bucket, tmp_path,
                                                             monkeypatch):
    """The emulator does not enforce preconditions, so record what the client was asked to send."""
    from google.api_core.exceptions import PreconditionFailed

    sent: dict[str, int] = {}
    original = storage.Blob.upload_from_filename

    def recording(self, filename, *args, **kwargs):
        sent[self.name.rsplit("/", 1)[1]] = kwargs["if_generation_match"]
        return original(self, filename, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "upload_from_filename", recording)
    v = import_path(workspace, store, write_npy_folder(tmp_path / "src"), name="pets").version
    remote.push(workspace, store, v.ref, gcs_bucket)
    assert len(sent) == 13 and set(sent.values()) == {0}  # "must not exist yet"
    stale = blob(gcs_bucket, "pets", v.version, "s001.npy")
    stale.upload_from_string(b"stale")
    sent.clear()
    remote.push(workspace, store, v.ref, gcs_bucket)
    assert sent == {"s001.npy": stale.generation}  # "must still be what was listed"

    def raced(self, filename, *args, **kwargs):
        raise PreconditionFailed("another writer")

    monkeypatch.setattr(storage.Blob, "upload_from_filename", raced)
    stale.upload_from_string(b"stale again")
    with pytest.raises(BluenoError, match="changed while Blueno worked on it .* Nothing was overwritten"):
        remote.push(workspace, store, v.ref, gcs_bucket)


@pytest.mark.slow
def test_that_a_trainer_uploads_its_saved_model_when_a_bucket_is_configured(workspace, store, gcs_bucket):
    from training_helpers import submit, threes_and_eights

    from blueno.scheduler import Scheduler, Slot

    workspace.settings_path.write_text(f'[gcs]\nbucket = "{gcs_bucket}"\n')
    ref = threes_and_eights(workspace, store)
    submit(workspace, store, f'name = "uploaded"\ndataset = "{ref}"\n[params]\nepochs = 1\n[models.mlp]\n')
    Scheduler(workspace, [Slot("cpu0", None)]).run(until_empty=True)
    run = store.query_one("SELECT runs.id, model_url, state FROM runs JOIN jobs ON jobs.id = runs.job_id")
    assert run["state"] == "succeeded"
    assert run["model_url"] == f"{gcs_bucket}/models/run-{run['id']}/model.keras"
    local = (workspace.run_dir(run["id"]) / "model.keras").read_bytes()
    assert blob(run["model_url"]).download_as_bytes() == local
