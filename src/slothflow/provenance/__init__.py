"""Read-only questions over the store: the log, file lineage and the reasons a call ran or was reused."""
