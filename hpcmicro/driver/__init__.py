"""Drivers: run the engine's protocol machines over a transport, with real time and threads.

``master.drive_master`` runs the master's loop; ``worker.WorkerDriver`` runs a
worker's kernel thread and mailbox thread; ``inprocess.run_inprocess`` runs a
whole call in one process (a master and N workers on threads); ``spmd`` runs a
call on the ranks of an MPI communicator.
"""
