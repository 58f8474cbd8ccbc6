"""Which modules are the user's own code, and what version of each a file holds.

The user's own modules are the ones they edit while a kernel runs: Python
source files outside the standard library and outside site-packages (an
editable install of their package lives in its project folder, so it
counts). Workers reload those when their files change (``fresh_modules``),
and the ``--cache`` key covers their contents (``dependencies.own_modules``).
parmagic's own files never count: a worker must not reload the code it is
running.

Imported in the workers: the standard library only.
"""

import functools
import os
import site
import sys
import sysconfig

_LIBRARY_FOLDER_NAMES = frozenset(("site-packages", "dist-packages"))


def own_file(module):
    """The absolute path of ``module``'s source file if it is the user's own
    code, else None (a builtin or compiled module, the standard library, an
    installed package, parmagic)."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    path = os.path.abspath(path)
    if path.startswith(_library_folders()):
        return None
    folders = path.split(os.sep)
    if _LIBRARY_FOLDER_NAMES.intersection(folders):
        return None
    return path


def signature(path):
    """What tells one version of the file at ``path`` from another without
    reading it: (modified time in ns, size, inode); None if it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def digest(path):
    """A digest of the contents of ``path`` (kept while its ``signature``
    is the same), or None if it cannot be read."""
    return _digest(path, signature(path))


@functools.lru_cache(maxsize=1024)
def _digest(path, file_signature):
    if file_signature is None:
        return None
    import xxhash

    try:
        with open(path, "rb") as file:
            return xxhash.xxh3_128_hexdigest(file.read())
    except OSError:
        return None


def installed_version():
    """What tells one state of the installed packages from another without
    reading them: the modified times of the site-packages folders. An
    install, upgrade or uninstall adds or removes entries there (its
    ``.dist-info`` folder at least), so the time changes; an edit inside an
    installed package's own folder does not."""
    return tuple(map(_modified_ns, _site_folders()))


def _modified_ns(folder):
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def _site_folders():
    folders = dict.fromkeys(
        (*(sysconfig.get_paths()[key] for key in ("purelib", "platlib")),
         *getattr(site, "getsitepackages", list)(),
         getattr(site, "getusersitepackages", lambda: None)()))
    return tuple(os.path.abspath(folder) for folder in folders if folder)


@functools.lru_cache(maxsize=1)
def _library_folders():
    """Folders of installed code: the standard library, site-packages (of
    this environment and the one it was made from), the user's site-packages,
    and parmagic's own package."""
    folders = {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}  # parmagic/
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars or None)
        folders.update(paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    folders.update(getattr(site, "getsitepackages", list)())
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    if user_site:
        folders.add(user_site)
    return tuple(os.path.join(os.path.abspath(folder), "") for folder in folders if folder)
