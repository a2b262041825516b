"""The event feed: the tailer that reads each new log row once (``tailer``), the encoded frames it
hands out (``frame``), the poll form and the list at one revision (``events``), the watch stream
(``watch``), the reads that watchers arriving together share (``shared_reads``) and retention
(``retention``)."""
