"""SpeechMoE model parts, one concept per module:

- moe.py:       experts, the top-1 router and dispatch (eq. 4-6, 8)
- memory.py:    the DFSMN sequential memory layer
- attention.py: the self-attention layer
- backbone.py:  the stack of MoE + memory layers with attention every k layers
- embedding.py: the shared embedding network and its CTC head
- acoustic.py:  the SpeechMoE acoustic model composing them
"""

from speechmoe.model.acoustic import ModelOutput, SpeechMoE, build_model, lengths_to_mask
from speechmoe.model.moe import Expert, MoELayer, Router, RoutingInfo

__all__ = ["ModelOutput", "SpeechMoE", "build_model", "lengths_to_mask", "Expert", "MoELayer",
           "Router", "RoutingInfo"]
