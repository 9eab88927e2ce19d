"""Pure logic with no network, disk or MCP: graph facts, scheduling, context budgets, pricing."""
