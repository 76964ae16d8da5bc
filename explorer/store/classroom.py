"""The classroom's rows: a lesson being taught (its question, phase, the run it reveals, the hash of its teacher's key,
and a five-character join code a student can type on a phone) and one vote per (lesson, voter). What a lesson asks
and who may reveal it are `explorer.lessons`'s."""

from __future__ import annotations

import secrets
from typing import Any

from .base import Database, utc_now
from .schema import CODE_ALPHABET, CODE_LENGTH, COLUMNS, new_lesson_code

_LESSON_COLUMNS = tuple(COLUMNS["lessons"])


def normal_code(code: str) -> str | None:
    """A typed join code as stored (upper case, without spaces), or None when it cannot be one."""
    typed = "".join(str(code).split()).upper()
    return typed if len(typed) == CODE_LENGTH and set(typed) <= set(CODE_ALPHABET) else None


class Classroom(Database):
    def open_lesson(self, lesson: str, key_hash: str, phase: str, run_id: str = "") -> tuple[str, str]:
        """Record a lesson being taught; returns its id and its join code (unique in this store)."""
        with self._transaction() as conn:
            lesson_id, code = "L" + secrets.token_hex(4), new_lesson_code()
            while conn.execute("SELECT 1 FROM lessons WHERE lesson_id = ? OR code = ?", (lesson_id, code)).fetchone():
                lesson_id, code = "L" + secrets.token_hex(4), new_lesson_code()
            self._insert(conn, "lessons", [(lesson_id, lesson, key_hash, phase, run_id, utc_now(), code)])
        return lesson_id, code

    def lesson_row(self, lesson_id: str) -> dict[str, Any] | None:
        """The lessons row (lesson_id, lesson, key_hash, phase, run_id, created, code), or None."""
        return self._lesson("lesson_id", str(lesson_id)[:20])

    def lesson_by_code(self, code: str) -> dict[str, Any] | None:
        """The lessons row with join code `code` (in any case, spaces anywhere), or None."""
        typed = normal_code(code)
        return None if typed is None else self._lesson("code", typed)

    def _lesson(self, column: str, value: str) -> dict[str, Any] | None:
        rows = self._read(f"SELECT {', '.join(_LESSON_COLUMNS)} FROM lessons WHERE {column} = ?", (value,))
        return dict(zip(_LESSON_COLUMNS, rows[0])) if rows else None

    def set_lesson_phase(self, lesson_id: str, phase: str, run_id: str | None = None) -> None:
        """Move the lesson to `phase`, showing `run_id` if given."""
        with self._transaction() as conn:
            conn.execute("UPDATE lessons SET phase = ?, run_id = COALESCE(?, run_id) WHERE lesson_id = ?",
                         (phase, run_id, lesson_id))

    def cast_vote(self, lesson_id: str, voter: str, choice: str) -> None:
        """Record `voter`'s answer, replacing their earlier one."""
        with self._transaction() as conn:
            self._insert(conn, "votes", [(lesson_id, voter, choice, utc_now())])

    def vote_counts(self, lesson_id: str) -> dict[str, int]:
        """Votes per answer given (answers nobody chose are absent)."""
        return {choice: int(n) for choice, n in self._read(
            "SELECT choice, COUNT(*) FROM votes WHERE lesson_id = ? GROUP BY choice", (lesson_id,))}

    def vote_of(self, lesson_id: str, voter: str) -> str | None:
        rows = self._read("SELECT choice FROM votes WHERE lesson_id = ? AND voter = ?", (lesson_id, voter))
        return rows[0][0] if rows else None
