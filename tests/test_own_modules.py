"""Which modules count as the user's own, and their file versions."""

import json
import types

import joblib
import numpy

import parmagic.worker.calls
from parmagic.common import own_modules
from parmagic.common.own_modules import digest, own_file, signature


def module_at(path):
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    return module


def test_a_source_file_of_the_users_is_theirs(tmp_path):
    path = tmp_path / "localmod.py"
    path.write_text("x = 1\n")
    assert own_file(module_at(path)) == str(path)


def test_the_standard_library_installed_packages_and_parmagic_are_not():
    for module in (json, numpy, joblib, parmagic.worker.calls, types):
        assert own_file(module) is None, module


def test_a_file_under_any_site_packages_folder_is_not(tmp_path):
    path = tmp_path / "env" / "lib" / "site-packages" / "pkg.py"
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert own_file(module_at(path)) is None


def test_the_signature_and_digest_follow_the_files_contents(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    first_signature, first_digest = signature(path), digest(path)
    path.write_text("x = 22\n")
    assert signature(path) != first_signature
    assert digest(path) != first_digest
    path.unlink()
    assert signature(path) is None and digest(path) is None


def test_installed_version_changes_when_site_packages_gains_or_loses_an_entry(
        tmp_path, monkeypatch):
    site_packages = tmp_path / "site-packages"
    site_packages.mkdir()
    monkeypatch.setattr(own_modules, "_site_folders", lambda: (str(site_packages),))
    before = own_modules.installed_version()
    assert own_modules.installed_version() == before
    (site_packages / "pkg-1.0.dist-info").mkdir()
    installed = own_modules.installed_version()
    assert installed != before
    (site_packages / "pkg-1.0.dist-info").rename(site_packages / "pkg-1.1.dist-info")
    assert own_modules.installed_version() != installed


def test_installed_version_of_a_missing_folder_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(own_modules, "_site_folders", lambda: (str(tmp_path / "gone"),))
    assert own_modules.installed_version() == (None,)
