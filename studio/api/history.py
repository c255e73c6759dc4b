"""`POST /api/history/sql`: read-only SQL over the run history (admins).

The run store is one DuckDB file that the server holds open (DuckDB lets one process
write, and then no other may read it), so `gristmill runs --sql` goes through here
while a server runs. The query is checked by the same whole-tree allow-list as the
CLI's and runs on the store's connection, which cannot reach files or the network.
"""

from __future__ import annotations

import json

from flows.errors import StoreError
from studio.api.base import ApiError, ApiHandler

MAX_ROWS = 10_000


class HistorySqlHandler(ApiHandler):
    async def post(self) -> None:
        self.require_admin()
        sql = self.body_object().get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise ApiError(400, "sql: expected a query (a non-empty string)", field="sql")
        store = self.services.store
        assert store is not None
        try:
            columns, rows = await store.query(sql)
        except StoreError as exc:
            raise ApiError(400, str(exc), field="sql") from None
        self.audit("history.sql", "", sql=sql[:500])
        shown = rows[:MAX_ROWS]
        # Values are JSON-friendly already (the store's query); str() for anything else.
        body = json.loads(json.dumps([list(r) for r in shown], default=str))
        self.reply({"columns": columns, "rows": body, "truncated": len(rows) > len(shown)})
