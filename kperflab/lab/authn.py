"""Who is asking: the lab's bearer tokens and the identities they stand for.

The admin token (written to the lab's kubeconfig) is the user ``kperflab-admin`` in ``system:masters``. More users
come from a static token file in kube-apiserver's ``--token-auth-file`` format — one ``token,user,uid,"group1,group2"``
line each — at ``<state dir>/tokens.csv``, read again whenever it changes. Every authenticated user also gets the
group ``system:authenticated``. (The lab does not enforce RBAC yet: any authenticated user may do anything.)
"""

from __future__ import annotations

import csv
import hmac
import io
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]

    def info(self) -> dict[str, object]:
        """``UserInfo`` as SelfSubjectReview and TokenReview report it."""
        return {"username": self.name, "uid": self.uid, "groups": list(self.groups)}


ADMIN = User("kperflab-admin", "kperflab-admin", ("system:masters", "system:authenticated"))


def parse_token_file(text: str) -> dict[str, User]:
    """token → User, from kube-apiserver's static token file format (blank lines and ``#`` comments skipped).

    >>> parse_token_file('s3cret,alice,u-1,"workshop,participants"\\n')["s3cret"].groups
    ('workshop', 'participants', 'system:authenticated')
    """
    out: dict[str, User] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#") or len(row) < 3:
            continue
        token, name, uid = (x.strip() for x in row[:3])
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        out[token] = User(name, uid, groups + ("system:authenticated",))
    return out


class Authenticator:
    def __init__(self, admin_token: str, token_file: Path | None = None) -> None:
        self.admin_token = admin_token
        self.token_file = token_file
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, User] = {}

    def _file_users(self) -> dict[str, User]:
        if self.token_file is None:
            return {}
        try:
            st = self.token_file.stat()
        except OSError:
            return {}
        with self._lock:
            if self._stamp != (st.st_mtime, st.st_size):
                try:
                    self._users = parse_token_file(self.token_file.read_text())
                except (OSError, UnicodeDecodeError):
                    self._users = {}
                self._stamp = (st.st_mtime, st.st_size)
            return self._users

    def user(self, token: str) -> User | None:
        """The user a bearer token stands for, or None when the token is unknown."""
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return ADMIN
        for known, user in self._file_users().items():
            if hmac.compare_digest(token.encode(), known.encode()):
                return user
        return None
