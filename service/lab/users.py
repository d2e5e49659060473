"""Users and their API tokens. Tokens are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import cache

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from service.core.orm import User


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "lt_" + secrets.token_urlsafe(32)


def create_user(session: Session, name: str, *, admin: bool = False) -> tuple[User, str]:
    """A new user and its token (the only time the token is seen in clear)."""
    token = new_token()
    user = User(name=name, token_hash=hash_token(token), is_admin=admin)
    session.add(user)
    session.flush()
    return user, token


def rotate_token(session: Session, user: User) -> str:
    token = new_token()
    user.token_hash = hash_token(token)
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The enabled user whose token this is. The lookup is by hash, then compared in constant time."""
    digest = hash_token(token)
    user = session.scalar(_by_token_hash(), {"digest": digest})
    if user is None or user.disabled or not hmac.compare_digest(user.token_hash, digest):
        return None
    return user


@cache
def _by_token_hash() -> Select:
    # Every request asks it: built once (building cost more than running it).
    return select(User).where(User.token_hash == bindparam("digest"))


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))
