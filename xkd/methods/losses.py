"""Loss functions: plain functions of tensors, so each can be checked against numbers computed by hand.

Softmax and KL run in float32 even under autocast: low-precision log-probabilities of peaked teacher
distributions lose the small differences KD learns from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gold_rows(labels: Tensor, regression: bool) -> Tensor:
    """Which rows carry a gold label: transfer rows carry none (label -1 for classification, NaN for regression,
    a row of -1 for multi-hot labels [B, C])."""
    if labels.dim() == 2:
        return (labels >= 0).all(dim=-1)
    return ~torch.isnan(labels) if regression else labels >= 0


def task_loss(logits: Tensor, labels: Tensor, regression: bool, multi_label: bool = False) -> Tensor:
    """Cross-entropy on gold labels, or MSE to the gold value for regression (logits [B, 1]), or BCE with logits on
    multi-hot labels [B, C] (`multi_label`: each label its own sigmoid, averaged over labels), averaged over the
    batch with rows without a gold label (transfer rows) counting 0.

    Dividing by the batch, not by the labelled rows, weighs every row alike: a labelled row adds CE to the teacher
    terms every row gets. (Averaging over the few labelled rows of a mostly-transfer batch would weigh each of them
    tens of times more than a transfer row, and overfit the gold data.)"""
    if multi_label:
        return multi_label_loss(logits, labels)
    gold = gold_rows(labels, regression)
    if bool(gold.all()):
        if regression:
            return F.mse_loss(logits.float().squeeze(-1), labels.float())
        return F.cross_entropy(logits.float(), labels.long())
    logits, rows = logits[gold].float(), len(labels)
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels[gold].float(), reduction="sum") / rows
    return F.cross_entropy(logits, labels[gold].long(), reduction="sum") / rows


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton's soft-label loss `τ² · KL(softmax(z_T/τ) ‖ softmax(z_S/τ))`, averaged over the batch.

    The τ² factor keeps gradient magnitudes comparable across temperatures (Hinton et al., 2015).
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * t * t


def multi_label_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """BCE with logits on multi-hot labels [B, C], the mean over labels per row, rows without gold labels (a row of
    -1) counting 0 in the batch mean as in `task_loss`."""
    gold = gold_rows(labels, regression=False)
    bce = F.binary_cross_entropy_with_logits(logits.float(), labels.float().clamp_min(0), reduction="none")
    return (bce.mean(dim=-1) * gold).sum() / len(labels)


def bernoulli_kl(target_logits: Tensor, student_logits: Tensor) -> Tensor:
    """Elementwise KL(Bern(σ(t)) ‖ Bern(σ(s))) between the Bernoulli distributions of two logit tensors.

    A label with logit z is the 2-class distribution [1 - σ(z), σ(z)] = softmax([0, z]); log σ(z) and log(1 - σ(z))
    = log σ(-z) come from `logsigmoid`, stable for logits of any size (float32, as every loss here)."""
    t, s = target_logits.float(), student_logits.float()
    log_p_t, log_q_t = F.logsigmoid(t), F.logsigmoid(-t)
    return log_p_t.exp() * (log_p_t - F.logsigmoid(s)) + log_q_t.exp() * (log_q_t - F.logsigmoid(-s))


def binary_kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Vanilla KD for multi-label outputs: `τ² · mean_c KL(Bern(σ(z_T,c/τ)) ‖ Bern(σ(z_S,c/τ)))`, averaged over the
    batch.

    Each label is its own sigmoid, so its teacher distribution is a Bernoulli; a softmax across labels (what
    `kd_loss` would do) makes them compete for one unit of mass, which multi-label outputs never do (TextBrewer
    issue #50). With one label it is `kd_loss` on the 2-class logits [0, z]; the τ² factor is Hinton's, as there.
    """
    t = temperature
    return bernoulli_kl(teacher_logits.float() / t, student_logits.float() / t).mean(dim=-1).mean() * t * t


def regression_kd_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """KD for regression tasks: MSE to the teacher's prediction (a KL over one output is meaningless)."""
    return F.mse_loss(student_logits.float(), teacher_logits.float())


def pkd_loss(student_vectors: Tensor, teacher_vectors: Tensor, normalize: bool = True) -> Tensor:
    """Patient KD (Sun et al. 2019): Σ over mapped layers of MSE between L2-normalised [CLS] vectors.

    Inputs are [B, k, D] with layer j of the student paired with layer j of the (already mapped) teacher slice.
    `normalize=False` gives the plain hidden-state MSE on mapped layers that other toolkits default to.
    """
    s, t = student_vectors.float(), teacher_vectors.float()
    if normalize:
        s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    return ((s - t) ** 2).mean(dim=(0, 2)).sum()


def logit_mse_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Tang et al. (2019): squared L2 distance between logits, summed over classes, averaged over the batch."""
    return ((student_logits.float() - teacher_logits.float()) ** 2).sum(-1).mean()


def attention_kl(student_attention: Tensor, teacher_attention: Tensor, attention_mask: Tensor) -> Tensor:
    """Aguilar et al.'s attention loss: KL(a^T ‖ a^S) per head and per real (unmasked) query row, averaged.

    Attention probabilities are [B, H, T, T]; padded query rows are left out, padded key columns carry no mass.
    """
    eps = 1e-12
    t = teacher_attention.float().clamp_min(eps)
    s = student_attention.float().clamp_min(eps)
    kl = (t * (t.log() - s.log())).sum(-1)  # [B, H, T]: one value per head and query row
    rows = attention_mask.float()[:, None, :].expand_as(kl)
    return (kl * rows).sum() / rows.sum().clamp_min(1)


def cls_cosine_loss(student_vectors: Tensor, teacher_vectors: Tensor) -> Tensor:
    """1 - cos(h^T, h^S), averaged over the batch (and over layers when given [B, k, D])."""
    return (1 - F.cosine_similarity(student_vectors.float(), teacher_vectors.float(), dim=-1)).mean()
