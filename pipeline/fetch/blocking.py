"""The stop before the site bans the address: downloads in a row answered with "sign in to
confirm you're not a bot" or a rate limit stop a run (`t12k fetch` and `t12k run` alike), and
the run says what to do about it."""

from __future__ import annotations

BLOCK_LIMIT = 3  # downloads in a row blocked by the site that stop the run
BLOCKED_KINDS = ("bot-check", "rate-limited")  # the failure kinds (classify.py) that count
BLOCKED = (
    "{n} downloads in a row met a 'confirm you are not a bot' or rate-limit answer; pass --cookies or "
    "--cookies-from-browser, raise --sleep or wait an hour, then run the same command to resume"
)


class SiteBlock:
    """Counts the downloads in a row the site blocked: a download that worked starts the count
    again, other failures (and cancelled downloads) leave it as it is."""

    def __init__(self, limit: int = BLOCK_LIMIT) -> None:
        self.limit = limit
        self.in_a_row = 0

    def downloaded(self) -> None:
        """A download worked: the site lets us in."""
        self.in_a_row = 0

    def failed(self, kind: str) -> str | None:
        """A download failed with `kind`; the run's stop message once the limit is met, else None."""
        if kind not in BLOCKED_KINDS:
            return None
        self.in_a_row += 1
        return BLOCKED.format(n=self.in_a_row) if self.in_a_row >= self.limit else None
