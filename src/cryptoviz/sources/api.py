"""What the JSON API sources share: an optional key sent in a header, the source's circuit breaker, and
fetching one page with its body checked inside the HTTP client."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime

import httpx
from pydantic import SecretStr

from cryptoviz.config import Settings
from cryptoviz.errors import SourceError
from cryptoviz.sources.base import RawPage
from cryptoviz.sources.http import BreakerState, HttpClient, redact_error
from cryptoviz.sources.spec import RequestBudget
from cryptoviz.timeutil import utc_now


class ApiSource:
    """Base of the API sources; a subclass names itself, its key header, and sets its rate limit (or names
    the ``budget`` whose rate limit this base class gives its source in the ``HttpClient``)."""

    name: str
    key_header: str
    budget: RequestBudget | None = None

    def __init__(self, settings: Settings, http: HttpClient, key: SecretStr | None, *,
                 now: Callable[[], datetime] = utc_now) -> None:
        self._settings = settings
        self._http = http
        self._now = now
        self._key = key.get_secret_value() if key is not None and key.get_secret_value() else None
        if self.budget is not None:
            http.set_rate_limit(self.name, self.budget.per_minute, self.budget.burst)

    @property
    def breaker_state(self) -> BreakerState:
        """This source's circuit breaker, for the run report ("closed", "open", "half-open")."""
        return self._http.breaker(self.name).state

    def record_usable(self, usable: bool) -> None:
        """Whether the last answer held a usable quote: a source that keeps answering nothing usable has
        its circuit breaker opened, and is probed after a cool-down instead of fetched every cycle."""
        self._http.breaker(self.name).record_usable(usable)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._key:
            headers[self.key_header] = self._key
        return headers

    def _get_page(self, url: str, params: Mapping[str, str | int],
                  check_response: Callable[[httpx.Response], int], *,
                  passthrough: Collection[int] = ()) -> tuple[RawPage, int]:
        """GET one page; ``check_response`` raises the error its body stands for, else counts its coins."""
        count = 0

        def check(response: httpx.Response) -> None:
            nonlocal count
            try:
                count = check_response(response)
            except SourceError as exc:
                raise redact_error(exc, [self._key]) from None  # servers may echo what they were sent

        # The check runs inside the HTTP client: a body cut short or a transient error envelope is retried
        # and counted by the breaker like a 5xx.
        response = self._http.get(self.name, url, params=params, headers=self._headers(),
                                  passthrough=passthrough, check=check)
        raw = RawPage(source=self.name, body=response.content, extension="json",
                      fetched_at=self._now(), url=str(response.url))
        return raw, count
