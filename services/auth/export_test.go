package auth

// CheckPassword is the password rule, for the fuzz target of package
// auth_test.
var CheckPassword = validPassword
