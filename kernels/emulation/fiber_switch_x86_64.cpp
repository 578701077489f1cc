// The x86-64 (System V) context switch of the emulator's fibers, as file-scope
// assembly (no assembler language needed in the build). It saves what a callee
// must preserve: rbx, rbp, r12-r15, the MXCSR and the x87 control word; the
// rest is caller-saved, so the C++ caller has already spilled it.
// Compiled to nothing off x86-64 or with DDPM_EMU_FIBER_UCONTEXT=1.
#include "fiber.h"

#if !DDPM_EMU_FIBER_UCONTEXT

// void ddpm_emu_switch_stack(void** save_sp /* rdi */, void* load_sp /* rsi */)
//   Pushes the callee-saved state, stores rsp in *save_sp, loads load_sp and
//   pops the state saved there (by an earlier switch, or by prepare_fiber).
// ddpm_emu_fiber_trampoline
//   Where a prepared fiber first "returns" to: calls r12(r13) and must not
//   come back (entry functions switch away for good).
asm(R"(
    .text
    .globl  ddpm_emu_switch_stack
    .hidden ddpm_emu_switch_stack
    .type   ddpm_emu_switch_stack, @function
    .p2align 4
ddpm_emu_switch_stack:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   ddpm_emu_switch_stack, .-ddpm_emu_switch_stack

    .globl  ddpm_emu_fiber_trampoline
    .hidden ddpm_emu_fiber_trampoline
    .type   ddpm_emu_fiber_trampoline, @function
    .p2align 4
ddpm_emu_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   ddpm_emu_fiber_trampoline, .-ddpm_emu_fiber_trampoline
)");

#endif
