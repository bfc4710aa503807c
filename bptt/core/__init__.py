"""The core that every other part builds on: input checks, the step contract and the unroller
(forward, backward), truncation, readout, losses and the diagnostics of gradient flow."""
