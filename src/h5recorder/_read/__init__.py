"""The read path: one episode, a folder of episodes, and the checks on files not trusted."""
