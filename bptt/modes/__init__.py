"""Other ways to differentiate an unrolled cell, each checked against reverse mode: forward mode
(jvp), RTRL, UORO, Hessian-vector products, checkpointed BPTT and central finite differences."""
