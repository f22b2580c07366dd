"""Simulation kernel: scene loading + sandbox, policies, GL backend choice, physics/render loop.

Submodules are imported explicitly (`from simreel.sim import rollout`); this package imports nothing
itself, because MuJoCo fixes its GL backend when `mujoco` is first imported and
`simreel.sim.gl.choose_backend()` has to run before that.
"""
