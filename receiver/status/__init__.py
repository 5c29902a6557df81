"""Read-only views of what the receiver does to each target: status and history.

One home for the typed views that `receiver status` / `receiver history` print and
GET /targets / GET /rollbacks answer, so the terminal and HTTP never disagree.
"""
