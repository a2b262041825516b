"""The event feed: the tailer that reads each new log row once (``tailer``), the encoded frames it
hands out (``frame``), the poll form and the list at one revision (``events``), the watch stream
(``watch``) and retention (``retention``)."""
