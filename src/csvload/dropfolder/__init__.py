"""The drop folder (`csvload watch DIR`): each complete new file in a folder imported once,
oldest first, then moved to done/ or failed/.  folder.py owns the folder on disk (which
files are complete, the lock, the moves), ledger.py the question "was this file imported
already?" asked of the run history, watcher.py the loop that ties them to job.run() and
yields one event per file.  Like the rest of the library it never prints."""
