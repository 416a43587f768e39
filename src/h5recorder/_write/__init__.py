"""The write path: the recorder, its ring, the writer thread, journal, frames and recovery."""
