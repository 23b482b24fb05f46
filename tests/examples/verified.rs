fn main() {
    for p in aya::programs::loaded_programs().flatten() {
        let name = p.name_as_str().unwrap_or("?").to_string();
        if name.contains("intune") {
            println!("{name} verified_insns={:?} size={:?}", p.verified_instruction_count(), p.size_translated());
        }
    }
}
