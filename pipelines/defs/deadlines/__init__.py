"""Legal deadlines: which open requests are due soon or overdue, visible in the UI."""
